"""``/api/embeddings``: upload an image, fetch its embedding tensors or metadata."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Query, Request, Response, UploadFile

from clicksam.formats import EmbeddingResponse
from clicksam.server.routes.deps import ServiceDep, SettingsDep, read_upload, upload_errors
from clicksam.server.schemas import IMAGE_UPLOAD_BODY, ErrorResponse

router = APIRouter(prefix="/api/embeddings", tags=["embeddings"])

TENSOR_CACHE_CONTROL = "public, max-age=31536000, immutable"


@router.post(
    "",
    response_model=EmbeddingResponse,
    responses=upload_errors("no 'image' file in the multipart form"),
    openapi_extra=IMAGE_UPLOAD_BODY,
)
async def create_embedding(
    service: ServiceDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File(description="the image file (JPEG, PNG, WebP, HEIC, ...)")],
) -> EmbeddingResponse:
    """Upload an image and get its embedding's metadata; the tensor is at the returned ``url``.

    The image is decoded (EXIF orientation applied), identified by a hash of its pixels, and encoded
    once: repeated uploads of the same picture are answered from the cache (``cached: true``).
    """
    result = await service.embed(await read_upload(image, settings))
    return result.meta.response(cached=result.cached)


@router.get(
    "/{embedding_id}",
    response_class=Response,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": (
                "the image's tensors as raw little-endian bytes (C order), concatenated in the order of "
                "the metadata's `tensors` (each with its name, shape, and offset and size in elements): "
                "one [1, 256, 64, 64] tensor for SAM 1, three for SAM 2.1"
            ),
        },
        304: {"description": "not modified (If-None-Match matched the ETag)"},
        404: {"model": ErrorResponse, "description": "unknown embedding id"},
    },
)
async def get_embedding(
    embedding_id: str,
    request: Request,
    service: ServiceDep,
    dtype: Annotated[Literal["float16", "float32"], Query(description="wire dtype")] = "float16",
) -> Response:
    """The embedding's tensors as raw bytes: float16 by default, float32 with ``?dtype=float32``.

    The layout is the metadata's ``tensors`` list: tensor ``t`` is the ``t.size`` elements from element
    ``t.offset`` on (byte offset ``t.offset`` x 2 for float16, x 4 for float32). Never gzip-compressed
    (float16 activations hardly compress); cacheable forever (the id is a content hash).
    """
    entry = service.get(embedding_id)
    etag = f'"{embedding_id}-{dtype}"'
    headers = {
        "ETag": etag,
        "Cache-Control": TENSOR_CACHE_CONTROL,
        "X-Embedding-Shape": ",".join(str(d) for d in entry.meta.shape),
        "X-Embedding-Dtype": dtype,
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = entry.float16 if dtype == "float16" else entry.float32
    return Response(content=body, media_type="application/octet-stream", headers=headers)


@router.get(
    "/{embedding_id}/meta",
    response_model=EmbeddingResponse,
    responses={404: {"model": ErrorResponse, "description": "unknown embedding id"}},
)
async def get_embedding_meta(embedding_id: str, service: ServiceDep) -> EmbeddingResponse:
    """The metadata of a cached embedding, as ``POST`` returned it: a page that has an id skips the upload."""
    return service.get(embedding_id).meta.response(cached=True)
