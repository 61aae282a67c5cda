"""Helpers of the projects tests: images, masks as RLE, a real server per test, PostgreSQL schemas."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from PIL import Image

#: the project machines' PostgreSQL (trust auth, database ``test``); override for another one
POSTGRES_URL = os.environ.get(
    "CLICKSAM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def image_bytes(height: int, width: int, seed: int, fmt: str = "PNG", **save: Any) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **save)
    return buf.getvalue()


def ring_mask(height: int, width: int, cy: float, cx: float, r_out: float, r_in: float) -> np.ndarray:
    """A disc of radius ``r_out`` with a hole of radius ``r_in`` (a non-trivial shape with a hole)."""
    yy, xx = np.mgrid[:height, :width]
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    return (d2 <= r_out**2) & (d2 > r_in**2)


def rle(mask: np.ndarray) -> dict[str, Any]:
    """Our own COCO RLE encoding (checked against pycocotools in the tests that need it)."""
    from clicksam.server.projects.masks import mask_to_counts

    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": mask_to_counts(mask)}


def annotation(mask: np.ndarray, category: str = "cat", **extra: Any) -> dict[str, Any]:
    return {"category": category, "segmentation": rle(mask), **extra}


def postgres_reachable(url: str) -> str | None:
    """None when ``url`` answers, else why not."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means "skip": the message says which
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A fresh schema in ``url``'s database; yields a URL whose connections use it, dropped at the end."""
    import sqlalchemy

    schema = f"clicksam_test_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()
