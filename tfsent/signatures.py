"""The export's serving contract: the names its callers use, in one place without TensorFlow.

``tfsent.export`` writes a SavedModel with these signatures, input and outputs; the light client
(``tfsent.client``), the app and the benchmarks call it by them. Importing this module loads
nothing (the client-only install imports it)::

    serving_default:  text (string [batch])                -> OUTPUTS
    token_ids:        the family's tokenizer outputs (int64) -> OUTPUTS

``probabilities`` is ``softmax(logits / T)`` with the run's calibration temperature,
``label_id`` its argmax, ``label`` that class's name, and ``classes`` the label names in
class-id order on every row (TF Serving serves no assets, so the names travel as an output):

>>> OUTPUTS
('probabilities', 'label_id', 'label', 'logits', 'classes')
>>> SERVING_SIGNATURE, TEXT_INPUT
('serving_default', 'text')
"""

from __future__ import annotations

# TF Serving's default signature key: a request that names no signature gets this one.
SERVING_SIGNATURE = "serving_default"
TOKEN_IDS_SIGNATURE = "token_ids"
TEXT_INPUT = "text"

PROBABILITIES = "probabilities"
LABEL_ID = "label_id"
LABEL = "label"
LOGITS = "logits"
CLASSES = "classes"
OUTPUTS = (PROBABILITIES, LABEL_ID, LABEL, LOGITS, CLASSES)
