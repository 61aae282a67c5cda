"""``/api/projects``: projects, their images, annotations (versioned saves), pre-label proposals,
export and import.

Every route needs the server's bearer token when it has one (``runtime.require_token``). Database work
runs in plain ``def`` routes, which FastAPI runs on its thread pool, never on the event loop.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Final

import anyio
from fastapi import APIRouter, Body, Depends, FastAPI, File, Path, Query, UploadFile
from fastapi.responses import Response
from starlette.types import Scope

from clicksam.server.errors import ServerError, UploadTooLargeError
from clicksam.server.everything import EverythingOptions
from clicksam.server.images import sniff_format
from clicksam.server.projects import exports
from clicksam.server.projects.repository import image_out
from clicksam.server.projects.runtime import (
    ProjectsConfig,
    RepositoryDep,
    check_auth,
    projects_lifespan,
    require_token,
)
from clicksam.server.projects.schemas import (
    MAX_ID,
    AnnotationsIn,
    AnnotationsOut,
    Discarded,
    ExportFormat,
    ImagePage,
    ImagesCreated,
    ImageStatus,
    ImportResult,
    PrelabelIn,
    ProjectCreate,
    ProjectList,
    ProjectOut,
    ProposalIds,
    ProposalsOut,
    Saved,
    UploadError,
)
from clicksam.server.routes.deps import EverythingDep, ServiceDep, SettingsDep, upload_too_large_message
from clicksam.server.schemas import IMAGE_UPLOAD_BODY, ErrorResponse

ProjectId = Annotated[int, Path(ge=1, le=MAX_ID, description="project id")]
ImageId = Annotated[int, Path(ge=1, le=MAX_ID, description="image id")]

router = APIRouter(
    prefix="/api/projects",
    tags=["projects"],
    lifespan=projects_lifespan,
    dependencies=[Depends(require_token)],
    responses={401: {"model": ErrorResponse, "description": "missing or wrong bearer token"}},
)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    what = {
        400: "empty, truncated or undecodable image (the only file)",
        404: "no such project or image",
        409: "name in use, or a save based on a stale version",
        413: "upload bytes or pixel count over the limit (the only file; for a pre-label, the stored image)",
        415: "not a supported image type (the only file)",
        422: "the body breaks a rule; the detail says which",
        503: "model or database not ready, or the encoder or segment-everything is busy (see Retry-After)",
    }
    return {code: {"model": ErrorResponse, "description": what[code]} for code in codes}


#: Content-Type of stored images, by the sniffed format
MEDIA_TYPES: Final[dict[str, str]] = {
    "JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp", "BMP": "image/bmp",
    "TIFF": "image/tiff", "HEIF": "image/heif", "AVIF": "image/avif",
}  # fmt: skip
#: one request to ``POST /api/projects/{pid}/images`` may carry this many files of the upload limit
REQUEST_FILES: Final[int] = 20
_IMAGES_PATH = re.compile(r"^/api/projects/[^/]+/images$")


def is_image_upload(scope: Scope) -> bool:
    """Whether a request adds images to a project (its body limit is ``REQUEST_FILES`` uploads)."""
    return scope.get("method") == "POST" and bool(_IMAGES_PATH.match(scope.get("path", "")))


def request_too_large_message(limit: int) -> str:
    return f"upload too large: one request may carry {limit:,} bytes; send the images in several requests"


def install_projects(app: FastAPI, config: ProjectsConfig) -> None:
    """Add the projects API to ``app`` (once; a second call only replaces the config before start-up).

    The database opens with the app's lifespan.

    Raises:
        AuthConfigError: see ``runtime.check_auth``.
    """
    check_auth(config)
    installed = getattr(app.state, "projects_config", None) is not None
    app.state.projects_config = config
    app.state.projects = None
    if not installed:
        app.include_router(router)


@router.post("", status_code=201, response_model=ProjectOut, responses=_errors(409, 422))
def create_project(body: ProjectCreate, repo: RepositoryDep) -> ProjectOut:
    """Create a project with its categories (names, in display order)."""
    return repo.create_project(body.name, body.categories)


@router.get("", response_model=ProjectList)
def list_projects(repo: RepositoryDep) -> ProjectList:
    return ProjectList(projects=repo.list_projects())


@router.get("/{pid}", response_model=ProjectOut, responses=_errors(404))
def get_project(pid: ProjectId, repo: RepositoryDep) -> ProjectOut:
    return repo.get_project(pid)


@router.delete("/{pid}", status_code=204, response_class=Response, responses=_errors(404))
def delete_project(pid: ProjectId, repo: RepositoryDep) -> Response:
    """Delete the project with its images and annotations (image bytes no other project uses go too)."""
    repo.delete_project(pid)
    return Response(status_code=204)


@router.post(
    "/{pid}/images",
    status_code=201,
    response_model=ImagesCreated,
    responses=_errors(400, 404, 413, 415, 422, 503),
    openapi_extra=IMAGE_UPLOAD_BODY,
)
async def add_images(
    pid: ProjectId,
    repo: RepositoryDep,
    service: ServiceDep,
    settings: SettingsDep,
    image: Annotated[
        list[UploadFile], File(min_length=1, description="image files; repeat the field for several")
    ],
) -> ImagesCreated:
    """Add images; each is checked as ``POST /api/embeddings`` checks an upload, and encoded.

    A refused file is listed in ``errors`` (with the status ``/api/embeddings`` would answer) and the
    others are kept. When every file is refused, the answer is the first file's error. The same bytes
    twice give the same image.
    """
    await anyio.to_thread.run_sync(repo.get_project, pid)  # 404 before any work
    created = []
    errors: list[tuple[UploadError, ServerError]] = []
    for upload in image:
        name = upload.filename or "image"
        try:
            if upload.size is not None and upload.size > settings.max_upload_bytes:
                raise UploadTooLargeError(upload_too_large_message(settings.max_upload_bytes))
            data = await upload.read()
            if len(data) > settings.max_upload_bytes:
                raise UploadTooLargeError(upload_too_large_message(settings.max_upload_bytes))
            result = await service.embed(data)
        except ServerError as exc:
            errors.append((UploadError(file_name=name, status_code=exc.status_code, detail=exc.message), exc))
            continue
        height, width = result.pixels.shape[:2]
        add = functools.partial(
            repo.add_image, pid, data=data, file_name=name, fmt=sniff_format(data[:64]) or "",
            width=width, height=height,
        )  # fmt: skip
        record = await anyio.to_thread.run_sync(add)
        created.append(image_out(record, result.meta.id))
    if not created and errors:
        raise errors[0][1]
    return ImagesCreated(images=created, errors=[e for e, _ in errors])


@router.get("/{pid}/images", response_model=ImagePage, responses=_errors(404, 422))
def list_images(
    pid: ProjectId,
    repo: RepositoryDep,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    status: ImageStatus | None = None,
) -> ImagePage:
    """A page of the project's images in upload order, optionally of one status."""
    return repo.list_images(pid, offset, limit, status)


@router.get(
    "/{pid}/images/{iid}/file",
    response_class=Response,
    responses={200: {"content": {"image/*": {}}, "description": "the uploaded bytes"}, **_errors(404)},
)
def image_file(pid: ProjectId, iid: ImageId, repo: RepositoryDep) -> Response:
    """The image's bytes as uploaded (content-addressed, so cacheable forever)."""
    record = repo.image(pid, iid)
    return Response(
        repo.store.read(record.sha256),
        media_type=MEDIA_TYPES[record.format],
        headers={"Cache-Control": "private, max-age=31536000, immutable", "ETag": f'"{record.sha256}"'},
    )


@router.get("/{pid}/images/{iid}/annotations", response_model=AnnotationsOut, responses=_errors(404))
def get_annotations(pid: ProjectId, iid: ImageId, repo: RepositoryDep) -> AnnotationsOut:
    """The image's annotations and their version (send it back with the next save)."""
    return repo.get_annotations(pid, iid)


@router.put("/{pid}/images/{iid}/annotations", response_model=Saved, responses=_errors(404, 409, 422))
def save_annotations(pid: ProjectId, iid: ImageId, body: AnnotationsIn, repo: RepositoryDep) -> Saved:
    """Replace the image's annotations, atomically, if ``version`` is still the current one.

    A stale version is a 409 and changes nothing; a malformed RLE, or one whose size is not the image's,
    is a 422. Annotations sent with their ``id`` keep it (and their ``created_at``).
    """
    return Saved(version=repo.save_annotations(pid, iid, body))


@router.post(
    "/{pid}/images/{iid}/prelabel", response_model=ProposalsOut, responses=_errors(404, 413, 422, 503)
)
async def prelabel(
    pid: ProjectId,
    iid: ImageId,
    repo: RepositoryDep,
    everything: EverythingDep,
    body: Annotated[PrelabelIn | None, Body(description="segment-everything options and min_score")] = None,
) -> ProposalsOut:
    """Run segment-everything on the stored image; its masks scoring at least ``min_score`` replace the
    image's proposals, and are returned best first.

    Takes seconds to minutes on a CPU (about ``points_per_side**2`` decoder runs); the same image and
    options again are answered from the generator's cache. Busy: 503 with Retry-After.
    """
    options = body or PrelabelIn()
    record = await anyio.to_thread.run_sync(repo.image, pid, iid)
    data = await anyio.to_thread.run_sync(repo.store.read, record.sha256)
    # the fields of EverythingOptions, in order
    run = EverythingOptions(
        options.points_per_side, options.pred_iou_thresh, options.stability_score_thresh,
        options.box_nms_thresh, options.crop_n_layers, options.min_mask_region_area,
    )  # fmt: skip
    result = await everything.segment(data, run)  # decodes the bytes once (EmbeddingService.embed)
    found = [m for m in result.masks if m.predicted_iou >= options.min_score]
    return await anyio.to_thread.run_sync(repo.replace_proposals, pid, iid, found)


@router.get("/{pid}/images/{iid}/proposals", response_model=ProposalsOut, responses=_errors(404))
def get_proposals(pid: ProjectId, iid: ImageId, repo: RepositoryDep) -> ProposalsOut:
    """The image's pre-label proposals not yet kept or discarded, best score first."""
    return repo.get_proposals(pid, iid)


@router.post("/{pid}/images/{iid}/proposals/discard", response_model=Discarded, responses=_errors(404, 422))
def discard_proposals(pid: ProjectId, iid: ImageId, body: ProposalIds, repo: RepositoryDep) -> Discarded:
    """Remove proposals: discarded ones, and kept ones once their annotation is saved (the page keeps
    a proposal by saving its mask as an annotation with the usual versioned ``PUT``, then discards it).
    Ids that are no longer there (discarded by someone else, or replaced by a new pre-label) are ignored.
    """
    return Discarded(discarded=repo.discard_proposals(pid, iid, body.ids))


_MEDIA = {"coco": "application/json", "coco-polygons": "application/json"}


@router.get(
    "/{pid}/export",
    response_class=Response,
    responses={
        200: {"content": {"application/json": {}, "application/zip": {}}, "description": "the export"},
        **_errors(404, 422),
    },
)
def export_project(
    pid: ProjectId, repo: RepositoryDep, format: Annotated[ExportFormat, Query()] = "coco"
) -> Response:
    """The project as COCO (RLE masks), COCO with polygons, a YOLO-seg zip, or a zip of PNG masks."""
    snapshot = repo.snapshot(pid)
    if format == "coco":
        body = exports.dump_json(exports.coco_rle(snapshot))
    elif format == "coco-polygons":
        body = exports.dump_json(exports.coco_polygons(snapshot))
    elif format == "yolo":
        body = exports.yolo(snapshot, repo.store)
    else:
        body = exports.png_masks(snapshot)
    suffix = "json" if format in _MEDIA else "zip"
    return Response(
        body,
        media_type=_MEDIA.get(format, "application/zip"),
        headers={"Content-Disposition": f'attachment; filename="project-{pid}-{format}.{suffix}"'},
    )


@router.post("/{pid}/import", response_model=ImportResult, responses=_errors(404, 422))
def import_coco(
    pid: ProjectId,
    repo: RepositoryDep,
    doc: Annotated[dict[str, Any], Body(description="a COCO instances document (RLE or polygons)")],
) -> ImportResult:
    """Import COCO annotations (ours or anyone's) into the images of the same file name and size.

    Missing categories are added; each matched image's annotations are replaced (its version goes up).
    All or nothing: one broken annotation and nothing changes.
    """
    categories, images = exports.parse_coco(doc)
    return repo.import_annotations(pid, categories, images)
