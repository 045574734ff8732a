"""tfsent: fine-tune BERT for sentiment with TensorFlow/Keras and ship it to TensorFlow Serving.

The package follows the flow of a run, one module per stage::

    data -> features -> model -> fit -> evaluate/calibration -> export -> (TF Serving) -> client

``tfsent.client`` (no TensorFlow) scores reviews against TF Serving; ``tfsent.model_server`` is
a TF-Serving-compatible stand-in for development and tests; ``tfsent.app`` is a web page for
people. Heavy modules (TensorFlow, transformers) are imported by the stage that needs them, so
``import tfsent`` stays cheap and works on the client-only install.
"""

__version__ = "0.1.0"
