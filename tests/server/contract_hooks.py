"""Schemathesis hooks of the OpenAPI contract run (``test_openapi_contract.py``), loaded by its CLI.

The ``image`` part of an upload is documented as ``image/png, image/jpeg, ...``; schemathesis cannot
make a decodable image from that, so these media types get a few real tiny images (each is encoded once,
then the server's cache answers). ``POST /api/everything`` costs ``points_per_side**2`` decoder runs per
crop: a schema-valid run is capped at 2x2 points and no crop layers, so the run stays short
(``test_everything.py`` tests the generator itself). A project image's pre-label (``POST
/api/projects/{pid}/images/{iid}/prelabel``, options in a JSON body that may be left out) runs the same
generator and gets the same caps; a request without a body (SAM's 32x32 default) is sent an empty JSON
object instead, which the cap then turns into 2x2 points. Out-of-range values are sent as generated.

One workaround for schemathesis 4.32 itself: it rewrites a response schema's OpenAPI 3.1 ``prefixItems``
(pydantic's spelling of a tuple, e.g. ``original_size: [H, W]``) into the old list form of ``items`` and
then refuses that as invalid 3.1 ("Schema Error"), so no 200 carrying a tuple is ever validated (the
parameter side of that bug was fixed upstream, schemathesis#4099). In the loaded copy of the document the
responses refer to copies of their schemas that spell each tuple as an array of its item type(s) with the
same length; requests keep the exact tuples, and the server's document is left as it is.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.core import NotSet


def _image(fmt: str, mode: str, height: int, width: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGBA").convert(mode).save(buf, fmt)
    return buf.getvalue()


PNGS = [_image("PNG", "RGB", 24, 16, 0), _image("PNG", "RGBA", 8, 8, 1), _image("PNG", "L", 5, 12, 2)]
JPEGS = [_image("JPEG", "RGB", 16, 16, 3)]
schemathesis.openapi.media_type("image/png", st.sampled_from(PNGS))
schemathesis.openapi.media_type("image/jpeg", st.sampled_from(JPEGS))


def _tuple_as_array(node: dict[str, Any]) -> None:
    prefix = node.get("prefixItems")
    if isinstance(prefix, list) and prefix and "items" not in node:
        del node["prefixItems"]
        kinds = [kind for i, kind in enumerate(prefix) if kind not in prefix[:i]]
        node["items"] = kinds[0] if len(kinds) == 1 else {"anyOf": kinds}
        node.setdefault("minItems", len(prefix))
        node.setdefault("maxItems", len(prefix))


@schemathesis.hook
def before_load_schema(context: schemathesis.HookContext, raw_schema: dict[str, Any]) -> None:
    """Responses refer to copies of their component schemas with tuples as plain arrays."""
    components: dict[str, Any] = raw_schema.get("components", {}).get("schemas", {})
    copies: dict[str, str] = {}

    def for_responses(node: Any) -> Any:
        if isinstance(node, list):
            return [for_responses(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in copies:
                copies[name] = f"{name}InResponses"
                components[copies[name]] = for_responses(components[name])
            return {**node, "$ref": f"#/components/schemas/{copies[name]}"}
        copied = {key: for_responses(value) for key, value in node.items()}
        _tuple_as_array(copied)
        return copied

    for operations in raw_schema.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    if "schema" in media:
                        media["schema"] = for_responses(media["schema"])


def _in_range(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


#: the operations that run segment-everything
EVERYTHING_PATHS = ("/api/everything", "/api/projects/{pid}/images/{iid}/prelabel")


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    if case.operation.path not in EVERYTHING_PATHS:
        return
    if case.operation.path != "/api/everything" and (case.body is None or isinstance(case.body, NotSet)):
        # no options (or JSON null) means SAM's 32x32 grid: the same run as an in-range body asks for
        case.body = {}
        case.media_type = "application/json"
    form = getattr(case.body, "body", case.body)  # a multipart body with part media types wraps its dict
    if not isinstance(form, dict):
        return
    side = form.get("points_per_side", 32)
    if _in_range(side, 1, 64):
        form["points_per_side"] = min(side, 2)
    if _in_range(form.get("crop_n_layers"), 0, 2):
        form["crop_n_layers"] = 0
    # in-range values stay in range, so the case keeps the label it was generated with; without this,
    # schemathesis re-checks an edited body and calls any body with file bytes in it invalid
    case._record_starting_state()
