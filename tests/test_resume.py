"""Interrupt and resume: a training killed anywhere and resumed gives the SFT of an uninterrupted run.

The interrupted attempts run in child processes that kill themselves (``kill -9``) or send themselves
SIGTERM from the progress display at a chosen event; the resumptions and the uninterrupted reference
run in this process through the CLI.
"""

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from deftx_cli.app import app

CHILD = Path(__file__).with_name("resume_child.py")
runner = CliRunner()
STEPS = 6
TEXT = ("saya suka film ini sangat bagus", "makanan ini tidak enak", "film jelek tidak saya suka",
        "sangat enak makanan ini", "ini bagus sekali saya suka")


def cli(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
    return result


def child(how, when, *args, code):
    env = {**os.environ, "DEFTX_TEST_THREADS": str(torch.get_num_threads()), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(CHILD), how, when, "--", *[str(a) for a in args]],
                          capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture
def lang_args(tiny_model_dir, tmp_path):
    # marked as a model whose MLM head was not pretrained: the head is trained densely, so the
    # checkpoints hold a dense part too
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "head_warmup.json").write_text("{}")
    text = tmp_path / "text.txt"
    rng = random.Random(0)
    text.write_text("\n".join(rng.choice(TEXT) for _ in range(300)) + "\n")
    return ["train-lang", "--lang", "ind", "--text", text, "--model", model, "--preset", "smoke",
            "--phase1-steps", STEPS, "--phase2-steps", STEPS, "--k", "0.05", "--batch-size", "4", "--max-length", "16",
            "--lr", "0.01", "--weight-decay", "0.1", "--device", "cpu"]


def sft_bytes(sft_dir: Path) -> dict[str, bytes]:
    return {name: (sft_dir / name).read_bytes() for name in ("diff.safetensors", "head.safetensors") if (sft_dir / name).exists()}


def train_steps(run_dir: Path) -> list[tuple[int, int]]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(e["phase"], e["step"]) for e in lines if e["event"] == "train"]


def test_killed_anywhere_and_resumed_gives_the_uninterrupted_sft(lang_args, tmp_path):
    reference = tmp_path / "reference"
    cli(*lang_args, "--runs-dir", reference, "--run-id", "ref", "--quiet")
    expected = sft_bytes(reference / "ref" / "sft")
    assert "diff.safetensors" in expected and "head.safetensors" in expected  # the MLM head is trained densely

    runs = tmp_path / "runs"
    args = [*lang_args, "--runs-dir", runs, "--save-every", "2"]
    rng = random.Random(14)
    in_phase1, in_phase2 = rng.randint(1, STEPS), rng.randint(1, STEPS)
    child("KILL", f"train:1:{in_phase1}", *args, code=-9)
    [run_dir] = list(runs.iterdir())
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # kill -9: nothing ran after it

    # another setting is refused, naming it; nothing is touched
    refused = cli(*args, "--resume", "--lr", "0.02", code=2)
    assert f"deftx: error: cannot resume run {run_dir.name}: lr was 0.01, now 0.02" in refused.stderr

    child("KILL", "selection", *args, "--resume", code=-9)
    child("KILL", f"train:2:{in_phase2}", *args, "--resume", code=-9)
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert len(checkpoints) == 2, checkpoints  # the last two are kept
    # corrupt the newest checkpoint: the run resumes from the one before
    state = run_dir / "checkpoints" / checkpoints[-1] / "state.safetensors"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))

    resumed = cli(*args, "--resume")
    assert f"skipped checkpoint {checkpoints[-1]}: state.safetensors is corrupt or truncated (checksum mismatch)" in resumed.stderr
    assert f"resuming run {run_dir.name}" in resumed.stderr and checkpoints[0] in resumed.stderr
    assert sft_bytes(run_dir / "sft") == expected

    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and len(record["resumptions"]) == 3
    assert [r["checkpoint"] for r in record["resumptions"]][-1] == checkpoints[0]
    assert not (run_dir / "checkpoints").exists() and record["checkpoints"] == []  # deleted when finished
    # the loss curve has every step once: lines the killed attempts wrote after their checkpoint were dropped
    assert train_steps(run_dir) == [(1, s) for s in range(1, STEPS + 1)] + [(2, s) for s in range(1, STEPS + 1)]
    events = [json.loads(line)["event"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert events.count("resume") <= 3 and events.count("selection") == 1 and events[-1] == "done"


def test_sigterm_saves_a_checkpoint_and_exits_143(lang_args, tmp_path):
    words, rng = " ".join(TEXT).split(), random.Random(1)
    varied = tmp_path / "varied.txt"  # enough distinct lines for held-out blocks
    varied.write_text("\n".join(sorted({" ".join(rng.choice(words) for _ in range(rng.randint(4, 9))) for _ in range(400)})))
    lang_args[lang_args.index("--text") + 1] = varied
    runs = tmp_path / "runs"
    args = [*lang_args, "--runs-dir", runs, "--run-id", "job", "--save-every", "0", "--keep-checkpoints"]
    proc = child("TERM", "train:1:3", *args, code=143)
    error = [line for line in proc.stderr.splitlines() if line.startswith("deftx: error:")]
    assert error == ["deftx: error: terminated (SIGTERM) at phase 1 step 3; checkpoint saved"], proc.stderr
    assert "Traceback" not in proc.stderr and "--resume" in proc.stderr
    assert "checkpoints at the end of phase 1 and on SIGTERM only, about" in proc.stderr  # sizes said at the start
    run_dir = runs / "job"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert [c["name"] for c in record["checkpoints"]] == ["phase1-step000000003"]
    assert (run_dir / "checkpoints" / "phase1-step000000003" / "checkpoint.json").exists()

    resumed = cli(*args, "--resume")
    assert "resuming run job at phase 1 step 3" in resumed.stderr
    cli(*lang_args, "--runs-dir", tmp_path / "reference", "--run-id", "ref", "--quiet")
    assert sft_bytes(run_dir / "sft") == sft_bytes(tmp_path / "reference" / "ref" / "sft")
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir())  # --keep-checkpoints
    assert kept == ["phase1-step000000003", "phase1-step000000006"]
    assert train_steps(run_dir) == [(1, s) for s in range(1, STEPS + 1)] + [(2, s) for s in range(1, STEPS + 1)]
    # the base model's held-out metrics come from the checkpoint: measured once, before the first step
    base_eval = json.loads((run_dir / "run.json").read_text())["summary"]["base_eval"]
    reference = json.loads((tmp_path / "reference" / "ref" / "run.json").read_text())["summary"]["base_eval"]
    assert base_eval is not None and base_eval == reference
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(e["phase"], e["step"]) for e in events if e["event"] == "eval" and e.get("base")] == [(1, 0)]


def test_resume_with_nothing_to_resume_starts_a_new_run(lang_args, tmp_path):
    result = cli(*lang_args, "--runs-dir", tmp_path / "runs", "--resume", "--save-every", "0", "--phase1-steps", "2",
                 "--phase2-steps", "2")
    assert "no interrupted run to resume" in result.stderr
    [run_dir] = list((tmp_path / "runs").iterdir())
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    finished = cli(*lang_args, "--runs-dir", tmp_path / "runs", "--resume", "--run-id", run_dir.name, code=2)
    assert f"deftx: error: run {run_dir.name} already finished" in finished.stderr


def test_a_truncated_only_checkpoint_is_reported(tiny_model_dir, tmp_path):
    from deftx.errors import ArtifactError
    from deftx.training.checkpoint import Checkpointer, latest_checkpoint
    from test_training import config, mlm_setup
    from deftx.training import train_sft

    model, objective = mlm_setup(tiny_model_dir)
    directory = tmp_path / "checkpoints"
    train_sft(model, objective, config(phase1_steps=2, phase2_steps=2), manifest={"kind": "language"},
              checkpoints=Checkpointer(directory, keep=1))
    [only] = list(directory.iterdir())
    state = only / "state.safetensors"
    state.write_bytes(state.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="no usable checkpoint .* corrupt or truncated"):
        latest_checkpoint(directory)


def test_transfer_interrupted_inside_a_language_sft_resumes_it_mid_phase(tiny_model_dir, shared_data, tmp_path):
    runs = tmp_path / "runs"
    args = ["transfer", "--targets", "ace", "--methods", "lt-sft", "--baselines", "", "--split", "valid",
            "--model", tiny_model_dir, "--data-dir", shared_data, "--runs-dir", runs, "--preset", "smoke",
            "--save-every", "1", "--json"]
    child("KILL", "train:1:3", *args, code=-9)
    [lang_run] = [p for p in runs.iterdir() if p.name.startswith("xfer-lang-")]
    result = cli(*args)
    assert "language SFT ind (LT-SFT): resuming" in result.stderr
    assert f"resuming run {lang_run.name} at phase 1 step 2" in result.stderr  # not from step 0
    record = json.loads((lang_run / "run.json").read_text())
    assert record["status"] == "finished" and record["resumptions"][0]["step"] == 2
    assert train_steps(lang_run)[:4] == [(1, 1), (1, 2), (1, 3), (1, 4)]
    assert json.loads(result.stdout)["records"]


def test_settings_that_change_the_sft_are_named_others_may_change():
    from deftx.training.checkpoint import settings_difference

    saved = {"config": {"k": "0.05", "rank_rule": "energy:0.9", "device": "cpu", "log_every": 1},
             "data_sha256": "a", "base_fingerprint": "f", "mask_sha256": None}
    assert settings_difference(saved, saved) is None
    assert settings_difference(saved, {**saved, "config": {**saved["config"], "device": "cuda", "log_every": 5}}) is None
    assert settings_difference(saved, {**saved, "config": {**saved["config"], "rank_rule": "rank:8"}}) == \
        "rank_rule was energy:0.9, now rank:8"
    assert settings_difference(saved, {**saved, "data_sha256": "b"}) == "its training data differ"
    assert settings_difference(saved, {**saved, "base_fingerprint": "g"}) == "its base model's weights differ"


def test_a_task_sft_resumed_in_phase_2_is_the_uninterrupted_one(tiny_model_dir, tmp_path):
    # A task SFT with a language SFT applied and a dense classifier head; the first attempt fails in
    # phase 2 (any crash: the run is marked failed), the second resumes it from its checkpoint.
    from deftx.config import resolve_config
    from deftx.experiment.lifecycle import Checkpointing
    from deftx.experiment.language import train_language_sft
    from deftx.experiment.task import train_task_sft

    text = tmp_path / "text.txt"
    text.write_text("\n".join(random.Random(1).choice(TEXT) for _ in range(200)) + "\n")
    lang_cfg = resolve_config("language", "smoke", phase1_steps=2, phase2_steps=2, batch_size=4, max_length=16, device="cpu")
    lang = train_language_sft("ind", lang_cfg, model=tiny_model_dir, text_files=[text], runs_dir=tmp_path / "lang").sft_dir
    rows = ["text,label"] + [f"{t},{'positive' if 'bagus' in t or 'enak' in t else 'negative'}" for t in TEXT * 8]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    cfg = resolve_config("task", "smoke", phase1_steps=5, phase2_steps=5, batch_size=4, lr=1e-2, k=0.02, device="cpu")

    def train(runs, **kwargs):
        return train_task_sft("smsa", "ind", cfg, model=tiny_model_dir, lang_sft=lang, train_file=tmp_path / "train.csv",
                              runs_dir=runs, run_id="task", **kwargs)

    expected = sft_bytes(train(tmp_path / "reference").sft_dir)
    assert "head.safetensors" in expected

    class Crash(Exception):
        pass

    def crash(event, fields):
        if event == "train" and (fields["phase"], fields["step"]) == (2, 4):
            raise Crash

    with pytest.raises(Crash):
        train(tmp_path / "runs", callbacks=[crash], checkpointing=Checkpointing(save_every=3))
    assert json.loads((tmp_path / "runs" / "task" / "run.json").read_text())["status"] == "failed"
    torch.rand(100)  # the generators move on, as other work in the process would move them
    events = []
    outcome = train(tmp_path / "runs", callbacks=[lambda e, f: events.append((e, f))],
                    checkpointing=Checkpointing(save_every=3, resume=True))
    [(_, resume)] = [(e, f) for e, f in events if e == "resume"]
    assert (resume["phase"], resume["step"]) == (2, 3)
    assert sft_bytes(outcome.sft_dir) == expected


def test_sigterm_is_caught_while_installed_and_ends_the_selection_at_once():
    import signal

    from deftx.errors import TrainingTerminated
    from deftx.training.checkpoint import StopRequest

    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)  # noted, the process lives on: the step in progress ends first
        assert stop.requested
        with pytest.raises(TrainingTerminated), stop.anytime():  # the selection stops at once
            pass
    assert signal.getsignal(signal.SIGTERM) is before


def test_phase_two_only_with_a_given_mask_resumes_exactly(tiny_model_dir, tmp_path):
    # `--mask` (and the second method of `deftx transfer`): no phase 1, checkpoints in phase 2 only.
    from test_training import config, mlm_setup

    from deftx.model import maskable_parameters
    from deftx.training import train_sft
    from deftx.training.checkpoint import Checkpointer, latest_checkpoint

    model, objective = mlm_setup(tiny_model_dir)
    generator = torch.Generator().manual_seed(0)
    mask = {n: torch.rand(p.shape, generator=generator) < 0.05 for n, p in maskable_parameters(model).items()}
    cfg = config(phase2_steps=5, weight_decay=0.1)
    expected = train_sft(model, objective, cfg, manifest={"kind": "language"}, mask=mask).sft

    class Crash(Exception):
        pass

    def crash(event, fields):
        if event == "train" and fields["step"] == 4:
            raise Crash

    model, objective = mlm_setup(tiny_model_dir)
    with pytest.raises(Crash):
        train_sft(model, objective, cfg, manifest={"kind": "language"}, mask=mask, callbacks=[crash],
                  checkpoints=Checkpointer(tmp_path / "checkpoints", save_every=2))
    checkpoint, _ = latest_checkpoint(tmp_path / "checkpoints")
    assert (checkpoint.phase, checkpoint.step) == (2, 2)
    model, objective = mlm_setup(tiny_model_dir)
    resumed = train_sft(model, objective, cfg, manifest={"kind": "language"}, mask=mask, resume=checkpoint,
                        checkpoints=Checkpointer(tmp_path / "checkpoints", save_every=2)).sft
    assert resumed.entries.keys() == expected.entries.keys()
    for name, (index, values) in expected.entries.items():
        assert torch.equal(resumed.entries[name][0], index) and torch.equal(resumed.entries[name][1], values), name


def test_which_run_resume_continues(tmp_path):
    import socket

    from deftx.errors import UsageError
    from deftx.records.reading import find_resumable

    def run(run_id, started, **fields):
        (tmp_path / run_id).mkdir()
        record = {"run_id": run_id, "kind": "language", "languages": {"target": "ind"}, "task": None,
                  "status": "interrupted", "started_at": f"2026-12-04T{started}+00:00", "host": socket.gethostname(),
                  "pid": 99_999_999, **fields}
        (tmp_path / run_id / "run.json").write_text(json.dumps(record))

    run("old", "10:00:00")
    run("killed", "11:00:00", status="running")  # kill -9 here: marked running, its process gone
    run("other-language", "12:00:00", languages={"target": "ace"})
    run("done", "13:00:00", status="finished")
    run("alive", "14:00:00", status="running", pid=os.getpid())
    run("elsewhere", "15:00:00", status="running", host="node-17")  # cannot tell from here
    found, elsewhere = find_resumable(tmp_path, "language", languages={"target": "ind"})
    assert found.run_id == "killed" and elsewhere == ["elsewhere"]
    # named, a run killed on another machine is continued here; a live or finished one is refused
    assert find_resumable(tmp_path, "language", run_id="elsewhere")[0].run_id == "elsewhere"
    assert find_resumable(tmp_path, "language", run_id="new") == (None, [])
    for run_id, why in (("alive", "is still running"), ("done", "already finished")):
        with pytest.raises(UsageError, match=why):
            find_resumable(tmp_path, "language", run_id=run_id)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lt-sft", "deftx", "full-ft"])
def test_a_real_encoder_killed_in_each_phase_resumes_to_the_same_sft_bytes(method, shared_model, shared_data, tmp_path):
    """On me5-small (a word-embedding matrix of more than 2**24 entries, where phase 2's optimizer
    indices once lost precision on resume), with L1 and weight decay: SIGKILL in phase 1 and in phase 2,
    resumed, gives the SFT of an uninterrupted run byte for byte."""
    args = ["train-lang", "--lang", "ace", "--method", method, "--model", shared_model, "--data-dir", shared_data,
            "--preset", "smoke", "--phase1-steps", 6, "--phase2-steps", 6, "--batch-size", 4, "--max-length", 32,
            "--l1", "0.1", "--weight-decay", "0.1", "--device", "cpu"]
    cli(*args, "--runs-dir", tmp_path / "reference", "--run-id", "ref", "--quiet")
    expected = sft_bytes(tmp_path / "reference" / "ref" / "sft")
    runs = tmp_path / "runs"
    resumed = [*args, "--runs-dir", runs, "--run-id", "r", "--save-every", "2"]
    child("KILL", "train:1:3", *resumed, code=-9)
    if method != "full-ft":
        child("KILL", "train:2:5", *resumed, "--resume", code=-9)
    cli(*resumed, "--resume")
    assert sft_bytes(runs / "r" / "sft") == expected
    record = json.loads((runs / "r" / "run.json").read_text())
    assert [(r["phase"], r["step"]) for r in record["resumptions"]] == [(1, 2)] + ([(2, 4)] if method != "full-ft" else [])
