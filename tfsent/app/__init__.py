"""A web page for people in front of the sentiment model: ``python -m tfsent.app``.

::

    python -m tfsent.app --server grpc://localhost:8500      # TF Serving over gRPC
    python -m tfsent.app --server http://localhost:8501      # ... or over REST
    python -m tfsent.app --saved-model exported/tfsent       # the export, in this process

The page (single review, batch from pasted lines or a CSV, model info, error banner) talks to
its own small FastAPI backend (``tfsent.app.web``), which calls the model through
``tfsent.client``: browsers cannot speak TF Serving's gRPC, and its REST API sends no CORS
headers. Needs the ``app`` extra (FastAPI, uvicorn, Jinja2).
"""
