"""The projects schema: typed SQLAlchemy 2 models (changed only through the Alembic migrations).

    projects 1--n categories
    projects 1--n images 1--n annotations n--1 categories
                  images 1--n proposals

An image's ``version`` counts the saves of its annotations (optimistic concurrency: a save names the
version it read and is refused when another save came first). An annotation's mask is COCO compressed RLE
at the image's resolution (``images.height`` x ``images.width``), with its bbox and area derived from it.
A proposal is a mask a model made (pre-label) that nobody has kept or discarded yet: the same mask
columns, no category; keeping one makes it an annotation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: an image's workflow state
IMAGE_STATUSES: Final[tuple[str, ...]] = ("new", "in_progress", "done", "skipped")
#: what made an annotation: clicks, segment-everything, a text prompt, ``clicksam label``
ANNOTATION_SOURCES: Final[tuple[str, ...]] = ("manual", "everything", "text", "auto")
#: what made a proposal: segment-everything, or (later) a text prompt
PROPOSAL_SOURCES: Final[tuple[str, ...]] = ("everything", "text")
NAME_LENGTH: Final[int] = 200
FILE_NAME_LENGTH: Final[int] = 255


def utcnow() -> datetime:
    return datetime.now(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base; constraint names follow one convention so migrations can name them."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: DateTime(timezone=True)}  # noqa: RUF012 (SQLAlchemy's API)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    categories: Mapped[list[Category]] = relationship(
        back_populates="project", order_by="Category.position", cascade="all, delete-orphan"
    )


class Category(Base):
    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    #: order in which the project lists its categories (0-based); YOLO class index
    position: Mapped[int] = mapped_column(Integer)

    project: Mapped[Project] = relationship(back_populates="categories")


class ImageRecord(Base):
    """An image of a project; its bytes are in the blob store under ``sha256``."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("project_id", "sha256"),
        Index("ix_images_project_id_id", "project_id", "id"),
        Index("ix_images_project_id_status_id", "project_id", "status", "id"),
        CheckConstraint(_in("status", IMAGE_STATUSES), name="status"),
        CheckConstraint("version >= 0", name="version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    #: hex sha256 of the uploaded bytes (the blob's name; never re-encoded)
    sha256: Mapped[str] = mapped_column(String(64))
    #: the uploader's file name, for people and exports only: never used as a path
    file_name: Mapped[str] = mapped_column(String(FILE_NAME_LENGTH))
    #: the sniffed format (JPEG, PNG, ...), for the Content-Type of the served bytes
    format: Mapped[str] = mapped_column(String(8))
    #: size after EXIF orientation, as a person sees the picture (the masks' resolution)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="new")
    #: number of annotation saves; a save must name the current one
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class _MaskOfImage:
    """The columns an annotation and a proposal share: a mask of one image, where it came from and how."""

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    #: COCO compressed RLE counts; the size is the image's (height, width)
    rle_counts: Mapped[str] = mapped_column(Text)
    #: [x, y, w, h] in image pixels (COCO), derived from the mask
    bbox: Mapped[list[float]] = mapped_column(JSON)
    area: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    #: the prompts that made it: {"points": [[x, y, label], ...], "box": [x0, y0, x1, y1] | null}
    prompts: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Annotation(_MaskOfImage, Base):
    """One object on one image."""

    __tablename__ = "annotations"
    __table_args__ = (
        Index("ix_annotations_image_id_position", "image_id", "position"),
        Index("ix_annotations_category_id", "category_id"),
        CheckConstraint(_in("source", ANNOTATION_SOURCES), name="source"),
        CheckConstraint("area >= 0", name="area"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"))
    #: order within the image's list (as saved)
    position: Mapped[int] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProposalRecord(_MaskOfImage, Base):
    """A pre-label mask of one image, waiting to be kept (as an annotation) or discarded."""

    __tablename__ = "proposals"
    __table_args__ = (
        Index("ix_proposals_image_id_score", "image_id", "score"),
        CheckConstraint(_in("source", PROPOSAL_SOURCES), name="source"),
        CheckConstraint("area >= 0", name="area"),
        # ids are never reused (SQLite reuses the largest rowid otherwise): a page that still shows a
        # replaced proposal must not discard a new one of the same id
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: the model's predicted IoU (segment-everything) or detection score (text)
    score: Mapped[float] = mapped_column(Float)
    #: the generator's stability score (segment-everything only)
    stability_score: Mapped[float | None] = mapped_column(Float, nullable=True)
