"""Every read and write of the projects database, one transaction each, returning the API's models.

Writes run on ``db.writer(engine)``: on SQLite they take the write lock at BEGIN, so a write never has to
upgrade a stale read snapshot. An annotation save is optimistic: it names the image's version it started
from; the ``UPDATE images SET version = v + 1 WHERE version = v`` that opens it matches no row when another
save came first, which is a 409 and changes nothing (SQLite and PostgreSQL alike).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clicksam.formats import EverythingMask
from clicksam.server.projects import masks
from clicksam.server.projects.db import writer
from clicksam.server.projects.errors import ConflictError, InvalidInputError, NotFoundError
from clicksam.server.projects.models import (
    FILE_NAME_LENGTH,
    IMAGE_STATUSES,
    NAME_LENGTH,
    Annotation,
    Category,
    ImageRecord,
    Project,
    ProposalRecord,
    utcnow,
)
from clicksam.server.projects.schemas import (
    AnnotationIn,
    AnnotationOut,
    AnnotationsIn,
    AnnotationsOut,
    ImageOut,
    ImagePage,
    ImportResult,
    ProjectOut,
    Prompts,
    ProposalOut,
    ProposalsOut,
    Rle,
)
from clicksam.server.projects.storage import BlobStore

logger = logging.getLogger(__name__)

MAX_PAGE = 1000


def _aware(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _project_missing(pid: int) -> NotFoundError:
    return NotFoundError(f"no project with id {pid}; GET /api/projects lists them")


def _image_missing(pid: int, iid: int) -> NotFoundError:
    return NotFoundError(
        f"project {pid} has no image with id {iid}; GET /api/projects/{pid}/images lists them"
    )


def image_out(image: ImageRecord, embedding_id: str | None = None) -> ImageOut:
    return ImageOut(
        id=image.id,
        file_name=image.file_name,
        width=image.width,
        height=image.height,
        status=image.status,
        version=image.version,
        embedding_id=embedding_id,
    )


def _annotation_out(row: Annotation, category: str, height: int, width: int) -> AnnotationOut:
    return AnnotationOut(
        id=row.id,
        category=category,
        segmentation=Rle(size=[height, width], counts=row.rle_counts),
        bbox=list(row.bbox),
        area=row.area,
        source=row.source,
        score=row.score,
        prompts=Prompts.model_validate(row.prompts) if row.prompts is not None else None,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )


def clean_name(name: str, what: str) -> str:
    """``name`` stripped; 422 when empty or longer than the column."""
    stripped = name.strip()
    if not stripped:
        raise InvalidInputError(f"the {what} is empty; give it a name")
    if any(ord(c) < 32 or ord(c) == 127 for c in stripped):
        raise InvalidInputError(f"the {what} {stripped!r} has control characters; use printable ones")
    if len(stripped) > NAME_LENGTH:
        raise InvalidInputError(f"the {what} {stripped[:40]!r}... is longer than {NAME_LENGTH} characters")
    return stripped


@dataclass(frozen=True)
class AnnotationRecord:
    """An annotation as stored (checked and measured on the way in; read back for exports)."""

    id: int | None
    category: str
    counts: str
    bbox: list[float]
    area: int
    source: str
    score: float | None
    prompts: dict[str, Any] | None


def check_annotations(
    items: Sequence[AnnotationIn], categories: dict[str, int], height: int, width: int
) -> list[AnnotationRecord]:
    """Validate masks and categories of a save; 422 names the first bad annotation and the rule."""
    checked: list[AnnotationRecord] = []
    for i, item in enumerate(items):
        if item.category not in categories:
            known = ", ".join(repr(c) for c in categories) or "none yet"
            raise InvalidInputError(
                f"annotation {i}: unknown category {item.category!r}; the project's categories are {known}"
            )
        try:
            counts = masks.parse_rle(item.segmentation.model_dump(), height, width)
        except masks.MaskError as exc:
            raise InvalidInputError(f"annotation {i}: {exc}") from exc
        bbox, area = masks.bbox_and_area(counts, height)
        raw = item.segmentation.counts
        checked.append(
            AnnotationRecord(
                id=item.id,
                category=item.category,
                counts=raw if isinstance(raw, str) else masks.counts_to_string(counts),
                bbox=bbox,
                area=area,
                source=item.source,
                score=item.score,
                prompts=item.prompts.model_dump(mode="json") if item.prompts is not None else None,
            )
        )
    return checked


class Repository:
    """The projects database (``engine``) and the image bytes (``store``)."""

    def __init__(self, engine: Engine, store: BlobStore) -> None:
        self.engine = engine
        self.writer = writer(engine)
        self.store = store

    # ------------------------------------------------------------------------------------ projects

    def _project_out(self, session: Session, project: Project) -> ProjectOut:
        rows = session.execute(
            select(ImageRecord.status, func.count())
            .where(ImageRecord.project_id == project.id)
            .group_by(ImageRecord.status)
        ).all()
        counts = {status: 0 for status in IMAGE_STATUSES}
        counts.update({status: int(n) for status, n in rows})
        return ProjectOut(
            id=project.id,
            name=project.name,
            categories=[c.name for c in project.categories],
            image_count=sum(counts.values()),
            status_counts=counts,
            created_at=_aware(project.created_at),
        )

    def create_project(self, name: str, categories: Sequence[str]) -> ProjectOut:
        name = clean_name(name, "project name")
        cleaned = [clean_name(c, "category name") for c in categories]
        duplicates = sorted({c for c in cleaned if cleaned.count(c) > 1})
        if duplicates:
            raise InvalidInputError(f"category names must be unique; repeated: {', '.join(duplicates)}")
        try:
            with Session(self.writer) as session, session.begin():
                if session.scalar(select(Project.id).where(Project.name == name)) is not None:
                    raise ConflictError(f"a project named {name!r} already exists; choose another name")
                project = Project(
                    name=name, categories=[Category(name=c, position=i) for i, c in enumerate(cleaned)]
                )
                session.add(project)
                session.flush()
                return self._project_out(session, project)
        except IntegrityError as exc:  # a concurrent create of the same name (PostgreSQL)
            raise ConflictError(f"a project named {name!r} already exists; choose another name") from exc

    def list_projects(self) -> list[ProjectOut]:
        with Session(self.engine) as session, session.begin():
            projects = session.scalars(select(Project).order_by(Project.id)).all()
            return [self._project_out(session, p) for p in projects]

    def get_project(self, pid: int) -> ProjectOut:
        with Session(self.engine) as session, session.begin():
            project = session.get(Project, pid)
            if project is None:
                raise _project_missing(pid)
            return self._project_out(session, project)

    def project_id(self, name: str) -> int:
        """The id of the project named ``name``."""
        with Session(self.engine) as session, session.begin():
            pid = session.scalar(select(Project.id).where(Project.name == name))
            if pid is None:
                raise NotFoundError(f"no project named {name!r}; GET /api/projects lists them")
            return pid

    def delete_project(self, pid: int) -> None:
        """Delete the project, its images and annotations; blobs no other project uses go too."""
        with Session(self.writer) as session, session.begin():
            if session.get(Project, pid) is None:
                raise _project_missing(pid)
            shas = set(session.scalars(select(ImageRecord.sha256).where(ImageRecord.project_id == pid)))
            session.execute(delete(Project).where(Project.id == pid))  # the database cascades
            still_used = set(session.scalars(select(ImageRecord.sha256).where(ImageRecord.sha256.in_(shas))))
            # unlinked under the write lock: an upload of the same bytes re-checks its blob after commit
            for sha in shas - still_used:
                self.store.delete(sha)

    def categories(self, session: Session, pid: int) -> dict[str, int]:
        rows = session.execute(
            select(Category.name, Category.id).where(Category.project_id == pid).order_by(Category.position)
        ).all()
        return {name: cid for name, cid in rows}

    # -------------------------------------------------------------------------------------- images

    def add_image(
        self, pid: int, *, data: bytes, file_name: str, fmt: str, width: int, height: int
    ) -> ImageRecord:
        """Store the bytes and the image's row; the same bytes again give the existing image."""
        sha256 = self.store.put(data)
        # metadata only: the last path part, printable characters, at most the column's length
        base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
        name = "".join(c for c in base if ord(c) >= 32 and ord(c) != 127)[:FILE_NAME_LENGTH] or "image"
        with Session(self.writer, expire_on_commit=False) as session, session.begin():
            if session.get(Project, pid) is None:
                raise _project_missing(pid)
            image = session.scalar(
                select(ImageRecord).where(ImageRecord.project_id == pid, ImageRecord.sha256 == sha256)
            )
            if image is None:
                image = ImageRecord(
                    project_id=pid, sha256=sha256, file_name=name, format=fmt, width=width, height=height
                )
                session.add(image)
        if not self.store.path(sha256).is_file():  # deleted by a concurrent project delete: write again
            self.store.put(data)
        return image

    def list_images(self, pid: int, offset: int, limit: int, status: str | None) -> ImagePage:
        with Session(self.engine) as session, session.begin():
            if session.get(Project, pid) is None:
                raise _project_missing(pid)
            where = [ImageRecord.project_id == pid]
            if status is not None:
                where.append(ImageRecord.status == status)
            total = session.scalar(select(func.count()).select_from(ImageRecord).where(*where)) or 0
            rows = session.scalars(
                select(ImageRecord).where(*where).order_by(ImageRecord.id).offset(offset).limit(limit)
            ).all()
            return ImagePage(images=[image_out(r) for r in rows], total=total, offset=offset, limit=limit)

    def unsaved_image_ids(self, pid: int, *, after: int, limit: int) -> list[int]:
        """Ids above ``after`` of images never saved (version 0) and not skipped, in id order."""
        with Session(self.engine) as session, session.begin():
            return list(
                session.scalars(
                    select(ImageRecord.id)
                    .where(
                        ImageRecord.project_id == pid,
                        ImageRecord.version == 0,
                        ImageRecord.status != "skipped",
                        ImageRecord.id > after,
                    )
                    .order_by(ImageRecord.id)
                    .limit(limit)
                )
            )

    def image(self, pid: int, iid: int) -> ImageRecord:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            return self._load_image(session, pid, iid)

    # --------------------------------------------------------------------------------- annotations

    def _load_image(self, session: Session, pid: int, iid: int) -> ImageRecord:
        image = session.get(ImageRecord, iid)
        if image is None or image.project_id != pid:
            if session.get(Project, pid) is None:
                raise _project_missing(pid)
            raise _image_missing(pid, iid)
        return image

    def get_annotations(self, pid: int, iid: int) -> AnnotationsOut:
        with Session(self.engine) as session, session.begin():
            image = self._load_image(session, pid, iid)
            names = {cid: name for name, cid in self.categories(session, pid).items()}
            rows = session.scalars(
                select(Annotation).where(Annotation.image_id == iid).order_by(Annotation.position)
            ).all()
            return AnnotationsOut(
                version=image.version,
                annotations=[
                    _annotation_out(r, names[r.category_id], image.height, image.width) for r in rows
                ],
            )

    def save_annotations(self, pid: int, iid: int, body: AnnotationsIn) -> int:
        """Replace the image's annotations if ``body.version`` is current; returns the new version.

        Raises:
            NotFoundError: no such project or image.
            InvalidInputError: a bad mask, category or annotation id (nothing changes).
            ConflictError: ``body.version`` is not the image's version (nothing changes).
        """
        with Session(self.writer) as session, session.begin():
            image = self._load_image(session, pid, iid)
            categories = self.categories(session, pid)
            checked = check_annotations(body.annotations, categories, image.height, image.width)
            if image.version != body.version:
                raise self._stale(image.version, body.version)
            self._replace(session, image, checked, body.status, categories)
            return body.version + 1

    @staticmethod
    def _stale(current: int, sent: int) -> ConflictError:
        return ConflictError(
            f"version conflict: these annotations were saved since version {sent} (now version {current}); "
            f"reload them, or send version {current} to overwrite"
        )

    def _replace(
        self,
        session: Session,
        image: ImageRecord,
        checked: list[AnnotationRecord],
        status: str | None,
        categories: dict[str, int],
    ) -> None:
        """Bump the version (conditionally) and make ``checked`` the image's annotations."""
        sent = image.version
        new_status: Any = status if status is not None else (
            case((ImageRecord.status == "new", "in_progress"), else_=ImageRecord.status)
            if checked
            else ImageRecord.status
        )  # fmt: skip
        now = utcnow()
        bumped = session.execute(
            update(ImageRecord)
            .where(ImageRecord.id == image.id, ImageRecord.version == sent)
            .values(version=sent + 1, status=new_status, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if bumped.rowcount != 1:  # type: ignore[attr-defined]
            # another save committed between our read and this update (PostgreSQL's row lock waits for it)
            session.expire(image)
            raise self._stale(session.get(ImageRecord, image.id).version, sent)  # type: ignore[union-attr]
        existing = set(session.scalars(select(Annotation.id).where(Annotation.image_id == image.id)))
        kept_ids = {a.id for a in checked if a.id is not None}
        unknown = sorted(kept_ids - existing)
        if unknown:
            raise InvalidInputError(
                f"annotation id {unknown[0]} is not an annotation of image {image.id}; "
                "leave 'id' out for new ones"
            )
        # set-wise statements (one DELETE, one executemany UPDATE, one INSERT), not one flush per row
        dropped = existing - kept_ids
        if dropped:
            session.execute(delete(Annotation).where(Annotation.id.in_(dropped)))
        rows = [
            {
                "category_id": categories[item.category], "position": position, "rle_counts": item.counts,
                "bbox": item.bbox, "area": item.area, "source": item.source, "score": item.score,
                "prompts": item.prompts, "updated_at": now,
            } | ({"id": item.id} if item.id is not None else {"image_id": image.id, "created_at": now})
            for position, item in enumerate(checked)
        ]  # fmt: skip
        updates = [row for row in rows if "id" in row]
        inserts = [row for row in rows if "id" not in row]
        if updates:
            session.execute(update(Annotation), updates)  # bulk UPDATE by primary key
        if inserts:
            session.execute(insert(Annotation), inserts)

    # ----------------------------------------------------------------------------------- proposals

    def _proposals_out(self, session: Session, image: ImageRecord) -> ProposalsOut:
        rows = session.scalars(
            select(ProposalRecord)
            .where(ProposalRecord.image_id == image.id)
            .order_by(ProposalRecord.score.desc(), ProposalRecord.id)
        ).all()
        return ProposalsOut(
            proposals=[
                ProposalOut(
                    id=r.id,
                    segmentation=Rle(size=[image.height, image.width], counts=r.rle_counts),
                    bbox=list(r.bbox),
                    area=r.area,
                    source=r.source,
                    score=r.score,
                    stability_score=r.stability_score,
                    prompts=Prompts.model_validate(r.prompts) if r.prompts is not None else None,
                    created_at=_aware(r.created_at),
                )
                for r in rows
            ]
        )

    def get_proposals(self, pid: int, iid: int) -> ProposalsOut:
        """The image's pre-label proposals, best score first."""
        with Session(self.engine) as session, session.begin():
            return self._proposals_out(session, self._load_image(session, pid, iid))

    def replace_proposals(
        self, pid: int, iid: int, found: Sequence[EverythingMask], source: str = "everything"
    ) -> ProposalsOut:
        """Make ``found`` (masks at the image's size) the image's proposals, in one transaction.

        Raises:
            NotFoundError: no such project or image (deleted while the model ran).
        """
        with Session(self.writer) as session, session.begin():
            image = self._load_image(session, pid, iid)
            rows = []
            for m in found:
                rle = {"size": list(m.segmentation.size), "counts": m.segmentation.counts}
                counts = masks.parse_rle(rle, image.height, image.width)
                bbox, area = masks.bbox_and_area(counts, image.height)
                rows.append({
                    "image_id": image.id, "rle_counts": masks.counts_to_string(counts), "bbox": bbox,
                    "area": area, "source": source, "score": m.predicted_iou,
                    "stability_score": m.stability_score,
                    "prompts": {"points": [[x, y, 1] for x, y in m.point_coords], "box": None},
                    "created_at": utcnow(),
                })  # fmt: skip
            session.execute(delete(ProposalRecord).where(ProposalRecord.image_id == image.id))
            if rows:
                session.execute(insert(ProposalRecord), rows)
            return self._proposals_out(session, image)

    def discard_proposals(self, pid: int, iid: int, ids: Sequence[int]) -> int:
        """Delete the image's proposals among ``ids`` (ids no longer there are ignored); how many went."""
        with Session(self.writer) as session, session.begin():
            image = self._load_image(session, pid, iid)
            gone = session.execute(
                delete(ProposalRecord).where(
                    ProposalRecord.image_id == image.id, ProposalRecord.id.in_(set(ids))
                )
            )
            return int(gone.rowcount)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------------------ export / import

    def snapshot(self, pid: int) -> Snapshot:
        """The whole project as it is at one moment (one read transaction)."""
        with Session(self.engine) as session, session.begin():
            project = session.get(Project, pid)
            if project is None:
                raise _project_missing(pid)
            categories = [c.name for c in project.categories]
            names = {c.id: c.name for c in project.categories}
            rows = session.execute(
                select(Annotation)
                .join(ImageRecord, Annotation.image_id == ImageRecord.id)
                .where(ImageRecord.project_id == pid)
                .order_by(Annotation.image_id, Annotation.position)
            ).scalars()
            by_image: dict[int, list[AnnotationRecord]] = {}
            for row in rows:
                by_image.setdefault(row.image_id, []).append(
                    AnnotationRecord(
                        id=row.id,
                        category=names[row.category_id],
                        counts=row.rle_counts,
                        bbox=list(row.bbox),
                        area=row.area,
                        source=row.source,
                        score=row.score,
                        prompts=row.prompts,
                    )
                )
            images = [
                SnapshotImage(
                    id=image.id,
                    file_name=image.file_name,
                    sha256=image.sha256,
                    format=image.format,
                    width=image.width,
                    height=image.height,
                    status=image.status,
                    annotations=by_image.get(image.id, []),
                )
                for image in session.scalars(
                    select(ImageRecord).where(ImageRecord.project_id == pid).order_by(ImageRecord.id)
                )
            ]
            return Snapshot(name=project.name, categories=categories, images=images)

    def import_annotations(
        self, pid: int, categories: Sequence[str], images: Sequence[ImportedImage]
    ) -> ImportResult:
        """Add missing categories and replace the annotations of every matched image, all or nothing.

        Images are matched by file name (and, among images of the same name, by id); a match must have
        the same size. Each matched image's version goes up by one.
        """
        with Session(self.writer) as session, session.begin():
            project = session.get(Project, pid)
            if project is None:
                raise _project_missing(pid)
            known = self.categories(session, pid)
            added = [clean_name(c, "category name") for c in dict.fromkeys(categories) if c not in known]
            for offset, name in enumerate(added):
                session.add(Category(project_id=pid, name=name, position=len(known) + offset))
            session.flush()
            known = self.categories(session, pid)
            by_name: dict[str, list[ImageRecord]] = {}
            for image in session.scalars(
                select(ImageRecord).where(ImageRecord.project_id == pid).order_by(ImageRecord.id)
            ):
                by_name.setdefault(image.file_name, []).append(image)
            matched = 0
            count = 0
            unmatched: list[str] = []
            for item in images:
                candidates = by_name.get(item.file_name, [])
                image = next(
                    (c for c in candidates if c.id == item.id), candidates[0] if candidates else None
                )
                if image is None or (image.height, image.width) != (item.height, item.width):
                    unmatched.append(item.file_name)
                    continue
                try:
                    checked = check_annotations(item.annotations, known, image.height, image.width)
                except InvalidInputError as exc:
                    raise InvalidInputError(f"image {item.file_name!r}: {exc.message}") from exc
                self._replace(session, image, checked, None, known)
                matched += 1
                count += len(checked)
            return ImportResult(
                images=matched, annotations=count, categories_added=added, unmatched=unmatched
            )


@dataclass(frozen=True)
class SnapshotImage:
    id: int
    file_name: str
    sha256: str
    format: str
    width: int
    height: int
    status: str
    annotations: list[AnnotationRecord]


@dataclass(frozen=True)
class Snapshot:
    name: str
    categories: list[str]
    images: list[SnapshotImage]


@dataclass(frozen=True)
class ImportedImage:
    """An image of an imported COCO file with its annotations (masks as RLE at its size)."""

    id: int | None
    file_name: str
    width: int
    height: int
    annotations: list[AnnotationIn]
