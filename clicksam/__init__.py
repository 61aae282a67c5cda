"""clicksam: interactive Segment Anything in the browser.

The installed packages live under this namespace:

- ``clicksam.model``  -- SAM / MobileSAM in PyTorch, predictor, automatic mask generator, weights.
- ``clicksam.export`` -- ONNX export of the prompt encoder + mask decoder (and the image encoder).
- ``clicksam.server`` -- the FastAPI embedding service that also serves the web page.
- ``clicksam.train``  -- training / fine-tuning with SAM's losses and interactive prompt simulation.

and, in this folder, what sits above them: ``formats`` (every wire format, standard library only),
``errors`` (the base of every expected failure), ``cli`` (the console script, which reports those
failures) and ``serve`` (``clicksam serve``'s composition root, the one place that uses both the
exporter and the server, which never import each other).
"""

__version__ = "0.1.0"
