"""The OWLv2 detector against transformers' own pipeline (processor + model + post-processing).

A tiny random OWLv2 built in the test (tests/detector_testlib.py), real ``transformers`` model code,
a non-square image: our detections, mapped to original pixels, equal the pipeline's (boxes within 0.5 px,
same scores and labels) for text queries and for an exemplar (image-guided) query. Also: our
pre-processing equals ``Owlv2ImageProcessorPil``'s, and per-label NMS, threshold and cap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("scipy")

from detector_testlib import make_tiny_owlv2

from clicksam.model.detection import (
    EXEMPLAR_LABEL,
    Detections,
    Owlv2Detector,
    load_detector,
    postprocess,
    preprocess_owlv2,
)

TEXTS = ["a photo of a dog", "red car", "cat"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_owlv2(tmp_path_factory.mktemp("owlv2"))


@pytest.fixture(scope="module")
def detector(tiny_folder: Path) -> Owlv2Detector:
    loaded = load_detector(tiny_folder, name="tiny")
    assert isinstance(loaded, Owlv2Detector)
    return loaded


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A non-trivial RGB image: smooth gradients, two flat rectangles, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) % 97 * 2.5], axis=-1)
    img[height // 5 : height // 2, width // 6 : width // 3] = (220, 30, 30)
    img[height // 2 : height - 5, width // 2 : width - 10] = (20, 200, 60)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _reference(folder: Path) -> tuple[object, object]:
    from transformers import CLIPTokenizer, Owlv2ForObjectDetection, Owlv2Processor
    from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil

    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessorPil.from_pretrained(folder),
        tokenizer=CLIPTokenizer.from_pretrained(folder),
    )
    return processor, Owlv2ForObjectDetection.from_pretrained(folder).eval()


def _to_original(boxes: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Clip the pipeline's boxes (already scaled by the long side) to the image."""
    limit = torch.tensor([width, height, width, height], dtype=boxes.dtype)
    return torch.minimum(boxes.clamp(min=0), limit).numpy()


def _assert_same(ours: Detections, boxes: np.ndarray, scores: np.ndarray, labels: list[str]) -> None:
    order = np.argsort(-scores, kind="stable")
    assert len(ours) == len(order) > 0
    np.testing.assert_allclose(ours.scores, scores[order], atol=1e-5)
    assert ours.labels == [labels[i] for i in order]
    box_err = float(np.abs(ours.boxes - boxes[order]).max())
    score_err = float(np.abs(ours.scores - scores[order]).max())
    print(f"{len(order)} detections: max box error {box_err:.2e} px, max score error {score_err:.2e}")
    assert box_err <= 0.5


@pytest.mark.parametrize(("height", "width"), [(90, 150), (160, 70)])
def test_preprocessing_equals_the_pil_image_processor(height: int, width: int, tiny_folder: Path) -> None:
    processor, _ = _reference(tiny_folder)
    image = _image(height, width)
    theirs = processor.image_processor(images=image, return_tensors="np")["pixel_values"][0]  # type: ignore[attr-defined]
    ours = preprocess_owlv2(image, 64)
    assert ours.shape == theirs.shape == (3, 64, 64)
    assert float(np.abs(ours - theirs).max()) < 1e-5


@pytest.mark.slow
def test_text_detections_equal_the_transformers_pipeline_on_a_non_square_image(
    detector: Owlv2Detector, tiny_folder: Path
) -> None:
    processor, model = _reference(tiny_folder)
    height, width = 90, 150
    image = _image(height, width)
    inputs = processor(text=[TEXTS], images=image, return_tensors="pt")  # type: ignore[operator]
    with torch.no_grad():
        outputs = model(**inputs)  # type: ignore[operator]
    result = processor.image_processor.post_process_object_detection(  # type: ignore[attr-defined]
        outputs, threshold=0.0, target_sizes=[(height, width)]
    )[0]
    features = detector.image_features(image)
    ours = detector.detect(features, detector.text_embeddings(TEXTS), TEXTS, threshold=0.0)
    _assert_same(
        ours,
        _to_original(result["boxes"], height, width),
        result["scores"].numpy(),
        [TEXTS[i] for i in result["labels"].tolist()],
    )
    # a box scaled by (W, H) instead of the long side would be off by far more than 0.5 px
    assert float(ours.boxes[:, [1, 3]].max()) <= height


@pytest.mark.slow
def test_exemplar_detections_equal_transformers_image_guided_detection(
    detector: Owlv2Detector, tiny_folder: Path
) -> None:
    from transformers.image_transforms import center_to_corners_format

    processor, model = _reference(tiny_folder)
    height, width = 160, 70
    image = _image(height, width, seed=1)
    box = (10, 30, 40, 80)  # integer x0, y0, x1, y1: the crop is exactly these pixels
    crop = image[box[1] : box[3], box[0] : box[2]]
    inputs = processor(images=image, query_images=crop, return_tensors="pt")  # type: ignore[operator]
    with torch.no_grad():
        outputs = model.image_guided_detection(**inputs)  # type: ignore[attr-defined]
    scores = torch.sigmoid(outputs.logits[0].max(dim=-1).values).numpy()
    boxes = center_to_corners_format(outputs.target_pred_boxes[0]) * max(height, width)
    features = detector.image_features(image)
    queries = detector.exemplar_embeddings(image, np.asarray([box], dtype=np.float64))
    ours = detector.detect(features, queries, [EXEMPLAR_LABEL], threshold=0.0)
    _assert_same(ours, _to_original(boxes, height, width), scores, [EXEMPLAR_LABEL] * len(scores))


def test_text_embeddings_do_not_depend_on_the_batch(detector: Owlv2Detector) -> None:
    together = detector.text_embeddings(TEXTS)
    alone = torch.cat([detector.text_embeddings([t]) for t in TEXTS])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    assert detector.text_token_count("dog") == 3  # start, dog, end
    assert detector.max_text_tokens == 16


def test_postprocess_nms_per_label_threshold_and_cap() -> None:
    boxes = np.asarray(
        [[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60], [100, 100, 110, 110]],
        dtype=np.float32,
    )
    dets = Detections(
        boxes=boxes,
        scores=np.asarray([0.9, 0.8, 0.7, 0.6, 0.05], dtype=np.float32),
        labels=["dog", "dog", "cat", "dog", "dog"],
    )
    kept = postprocess(dets, threshold=0.1, iou_threshold=0.5, max_detections=10)
    # box 1 overlaps box 0 (same label) and goes; box 2 overlaps too but is a cat; 4 is under the threshold
    assert kept.labels == ["dog", "cat", "dog"]
    np.testing.assert_allclose(kept.scores, [0.9, 0.7, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(kept.boxes, boxes[[0, 2, 3]])
    assert postprocess(dets, threshold=0.1, iou_threshold=0.5, max_detections=2).labels == ["dog", "cat"]
    assert len(postprocess(dets, threshold=0.1, iou_threshold=1.0, max_detections=10)) == 4
    assert len(postprocess(dets, threshold=0.95, iou_threshold=0.5, max_detections=10)) == 0
    flat = Detections(
        boxes=np.asarray([[0, 5, 10, 5.5], [0, 0, 10, 10]], dtype=np.float32),
        scores=np.asarray([0.9, 0.8], dtype=np.float32),
        labels=["dog", "cat"],
    )
    assert postprocess(flat, threshold=0.1, iou_threshold=0.5, max_detections=10).labels == ["cat"]
