"""Projects: datasets of images with annotations that are stored, versioned and exported.

``models`` is the schema (SQLAlchemy 2), ``db`` opens the database and runs the Alembic migrations in
``migrations/``, ``storage`` keeps image bytes content-addressed on disk, ``masks`` checks and measures
COCO RLE masks, ``repository`` is every read and write (one transaction each), ``exports`` and
``imports`` speak COCO / YOLO-seg / PNG masks, ``auth`` guards the endpoints with a bearer token, and
``runtime`` wires it into the app (``install_projects``). The HTTP routes are in
``clicksam.server.routes.projects``.
"""
