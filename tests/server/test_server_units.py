"""Units of the model server that need no server: REST JSON, batching, the request queue,
message cleaning, config files and the command line."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from tfsent.errors import UserError
from tfsent.model_server.executor import RequestQueue
from tfsent.model_server.status import RequestError, clean_message


def test_rest_json_writes_values_like_tf_serving():
    from tfsent.model_server.rest_json import response_json

    outputs = {
        "x": np.array([0.1, 1.0, 1 / 3, np.nan], np.float32),
        "d": np.array([0.1, 2.5], np.float64)[:1].repeat(4),
        "raw_bytes": np.array([b"\xff", b"a", b"", b"b"], object),
        "s": np.array(["café".encode(), b"\xff\xfe", b"", b"x"], object),
    }
    columnar = response_json(outputs, "columnar")["outputs"]
    assert columnar["x"][:3] == [0.1, 1.0, 0.333333343] and np.isnan(columnar["x"][3])
    assert columnar["d"] == [0.1] * 4
    assert columnar["raw_bytes"] == [{"b64": "/w=="}, {"b64": "YQ=="}, {"b64": ""}, {"b64": "Yg=="}]
    # Not valid UTF-8: sent as b64 rather than as broken JSON.
    assert columnar["s"] == ["café", {"b64": "//4="}, "", "x"]
    rows = response_json({"y": np.array([[1, 2], [3, 4]], np.int64)}, "row")
    assert rows == {"predictions": [[1, 2], [3, 4]]}


def test_batch_scheduler_pads_to_allowed_sizes_and_never_mixes_widths():
    from tfsent.model_server.batching import BatchScheduler
    from tfsent.model_server.server_config import BatchingParameters

    shapes = []

    def run(signature, inputs):
        shapes.append(inputs["ids"].shape)
        return {"sum": inputs["ids"].sum(axis=1), "first": inputs["ids"][:, 0]}

    params = BatchingParameters(
        max_batch_size=8,
        batch_timeout_micros=200_000,
        num_batch_threads=1,
        allowed_batch_sizes=(4, 8),
    )
    scheduler = BatchScheduler(run, params)
    requests = [np.full((1, 4), i) for i in range(3)] + [np.arange(12).reshape(2, 6)]
    try:
        futures = [scheduler.submit("sig", {"ids": r}) for r in requests]
        results = [f.result(10) for f in futures]
    finally:
        scheduler.stop()
    assert sorted(shapes) == [(4, 4), (4, 6)]  # 3 rows and 2 rows, each padded to 4
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["sum"], request.sum(axis=1))
        np.testing.assert_array_equal(result["first"], request[:, 0])


def test_batch_scheduler_leaves_out_cancelled_requests_and_keeps_running():
    """A caller whose deadline passed cancels its future: its rows are not run, and the batch
    thread goes on (setting a cancelled future's result used to kill it)."""
    from tfsent.model_server.batching import BatchScheduler
    from tfsent.model_server.server_config import BatchingParameters

    gate = threading.Event()
    ran: list[list[int]] = []

    def run(signature, inputs):
        ran.append(inputs["x"].tolist())
        gate.wait(10)
        return {"y": inputs["x"] * 2}

    scheduler = BatchScheduler(run, BatchingParameters(max_batch_size=1, num_batch_threads=1))
    first = scheduler.submit("sig", {"x": np.array([1])})
    deadline = time.monotonic() + 10
    while not ran and time.monotonic() < deadline:
        time.sleep(0.01)
    given_up = scheduler.submit("sig", {"x": np.array([2])})
    assert given_up.cancel()
    last = scheduler.submit("sig", {"x": np.array([3])})
    assert scheduler.stop(timeout=0.2) is False  # a batch still runs: not stopped
    gate.set()
    assert first.result(10)["y"].tolist() == [2]
    assert last.result(10)["y"].tolist() == [6]  # queued batches still run on stop
    assert scheduler.stop(timeout=10) is True
    assert ran == [[1], [3]]


def test_tensor_protos_decode_as_tensor_from_proto_does():
    """Fewer values than the shape holds: the last one repeats. Refused, as TensorFlow refuses
    them (or, past MAX_DECODED_ELEMENTS, before they could fill the memory): negative
    dimensions, too many dimensions, too many elements."""
    import tensorflow as tf

    from tfsent.model_server.grpc_api import tensor_from_proto

    proto = tf.make_tensor_proto([b"a", b"b"], dtype=tf.string)
    assert tensor_from_proto(proto, "t").tolist() == [b"a", b"b"]
    proto.tensor_shape.dim[0].size = 4
    assert tensor_from_proto(proto, "t").tolist() == [b"a", b"b", b"b", b"b"]
    floats = tf.make_tensor_proto(np.array([[1.5]], np.float32))
    floats.tensor_shape.dim[1].size = 3
    assert tensor_from_proto(floats, "f").tolist() == [[1.5, 1.5, 1.5]]
    for dims in ([-5], [-1], [2, -1], [2**40], [2**31, 2**31, 4], [1] * 255):
        proto.tensor_shape.ClearField("dim")
        for size in dims:
            proto.tensor_shape.dim.add(size=size)
        with pytest.raises(RequestError) as info:
            tensor_from_proto(proto, "t")
        assert info.value.code.name == "INVALID_ARGUMENT"
        assert info.value.message.startswith("tensor parsing error: t"), dims


def test_request_queue_drops_requests_whose_deadline_passed_while_queued():
    queue = RequestQueue("test", threads=1, max_queued=4)
    gate = threading.Event()
    ran: list[str] = []
    try:
        blocker = queue.submit(gate.wait)
        late = queue.submit(lambda: ran.append("late"), deadline=time.monotonic() + 0.1)
        time.sleep(0.3)
        gate.set()
        with pytest.raises(RequestError) as info:
            late.result(5)
        assert info.value.code.name == "DEADLINE_EXCEEDED"
        assert blocker.result(5) is True and ran == []
    finally:
        queue.stop()


def test_request_queue_abort_answers_running_and_queued_requests():
    queue = RequestQueue("test", threads=1, max_queued=1)
    gate = threading.Event()
    running = queue.submit(gate.wait)
    queued = queue.submit(lambda: "never")
    time.sleep(0.1)
    assert queue.abort("shutting down") == 2
    for future in (running, queued):
        with pytest.raises(RequestError) as info:
            future.result(1)
        assert (info.value.code.name, info.value.http_status) == ("UNAVAILABLE", 503)
    gate.set()
    assert queue.wait_idle(5)
    queue.stop()


def test_request_queue_forgets_cancelled_requests():
    queue = RequestQueue("test", threads=1, max_queued=1)
    gate = threading.Event()
    queue.submit(gate.wait)
    queued = queue.submit(lambda: "never")
    assert queued.cancel()
    queue.submit(lambda: "fits again").cancel()  # the cancelled one freed its place
    gate.set()
    queue.stop()


@pytest.mark.parametrize("text, paths, expected", [
    ("Graph execution error:\n\nDetected at node tf_bert_for_sequence_classification/bert/"
     "embeddings/Gather defined at (most recent call last):\n  File \"/srv/x.py\", line 3, in f"
     "\n\nindices[0,600] = 600 is not in [0, 512)\n\t [[{{node tf_bert/embeddings/Gather}}]] "
     "[Op:__inference_signature_wrapper_1234]", (),
     "indices[0,600] = 600 is not in [0, 512)"),
    ("SavedModel file does not exist at: /srv/models/tfsent/3/{saved_model.pbtxt|saved_model.pb}",
     ("/srv/models/tfsent",), "SavedModel file does not exist at: 3/{saved_model.pbtxt"),
    ("could not open /home/me/secret/file.txt: denied", (), "could not open file.txt: denied"),
    ("<stack traces unavailable>\nbad input", (), "bad input"),
])
def test_clean_message_keeps_the_reason_only(text, paths, expected):
    cleaned = clean_message(text, paths)
    assert cleaned.startswith(expected), cleaned
    assert "node" not in cleaned and "/srv" not in cleaned and "/home" not in cleaned


def test_ssl_config_holds_pem_texts_and_checks_them():
    from tfsent.model_server.server_config import parse_ssl_config

    with pytest.raises(UserError, match="must hold the PEM text itself"):
        parse_ssl_config('server_key: "key.pem" server_cert: "cert.pem"')
    with pytest.raises(UserError, match="bad --ssl_config_file"):
        parse_ssl_config("server_key: 1 nope: 2")
    with pytest.raises(UserError, match="unusable key or certificate"):
        parse_ssl_config('server_key: "-----BEGIN PRIVATE KEY-----\\nx" '
                         'server_cert: "-----BEGIN CERTIFICATE-----\\nx"')


def test_grpc_channel_arguments_parse_like_tf_serving():
    from tfsent.model_server.server_config import parse_grpc_channel_arguments

    assert parse_grpc_channel_arguments("a=1,b=x,c=99999999999") == [
        ("a", 1), ("b", "x"), ("c", "99999999999")]
    assert parse_grpc_channel_arguments("") == []
    with pytest.raises(UserError, match="is not key=value"):
        parse_grpc_channel_arguments("a=1,b")


def test_every_server_option_is_a_flag_with_help():
    import dataclasses

    from tfsent.model_server.server import ServerOptions
    from tfsent.serve import build_parser, parse_options

    parser = build_parser()
    flags = {a.dest: a for a in parser._actions if a.dest != "help"}
    fields = {f.name: f for f in dataclasses.fields(ServerOptions)}
    # Every server option, plus the --verbose every tfsent CLI has (logging, not the server's).
    assert set(flags) == set(fields) | {"verbose"}
    assert all(flags[name].help and len(flags[name].help) > 5 for name in fields)
    assert parse_options(["--model_base_path=m"]) == ServerOptions(model_base_path="m")
    for text, value in (("true", True), ("false", False), ("0", False), ("yes", True)):
        assert parse_options([f"--enable_batching={text}"]).enable_batching is value
        assert parse_options(["--enable_model_warmup", text]).enable_model_warmup is value
    assert parse_options(["--enable_batching"]).enable_batching is True
    with pytest.raises(UserError, match="expected true or false"):
        parse_options(["--enable_batching=maybe"])


def test_serve_help_shows_each_default_once():
    from tfsent.serve import build_parser

    parser = build_parser()
    text = " ".join(parser.format_help().split())  # argparse wraps lines
    for bad in ("(default: )", "(default: None)", "(default: False)"):
        assert bad not in text, bad
    assert not re.search(r"\(default: [^)]*\) \(default:", text)  # never two defaults
    assert "--port INT gRPC port (default: 8500)" in text
    assert "run at once (default: 4 per CPU) --rest_api_num_threads" in text
    assert "server-side batching) (default: false)" in text
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["model_base_path"].count("default") == 0
    assert helps["grpc_max_threads"].count("(default:") == 1


def test_dashed_flags_name_their_underscore_spelling():
    """Other tfsent CLIs spell flags with dashes; TF Serving's, and so this server's, use
    underscores: the one-line error says which flag was meant, for every flag."""
    import dataclasses

    from tfsent.model_server.server import ServerOptions
    from tfsent.serve import parse_options

    dashed = [f for f in dataclasses.fields(ServerOptions) if "_" in f.name]
    assert len(dashed) > 20
    for field in dashed:
        flag = "--" + field.name.replace("_", "-")
        for argv in ([flag, "1"], [f"{flag}=1"]):
            with pytest.raises(UserError) as info:
                parse_options(argv)
            message = str(info.value)
            assert f"unrecognized argument {flag}: did you mean --{field.name}?" in message
            assert "\n" not in message
    with pytest.raises(UserError, match="unrecognized arguments: --no-such-flag"):
        parse_options(["--model_base_path=m", "--no-such-flag"])


def test_version_folders_are_ascii_digits_only(tmp_path):
    from tfsent.model_server.server_config import check_base_path, single_model_config

    for name in ("٣٣", "45\n", "²", ".tmp-3"):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file is no version")
    model = single_model_config("m", tmp_path).model_config_list.config[0]
    with pytest.raises(UserError, match="no version folders"):
        check_base_path(model)
    (tmp_path / "12").mkdir()
    check_base_path(model)
