r"""Runs that survive faults: kills, signals, full disks, concurrent writers and corrupted checkpoints.

Kills and signals hit real ``renorm train`` processes; write failures are simulated where this
machine cannot make a real one (a full or read-only file system needs a mount). Every case
asserts that nothing of the run is lost, that a resumed run is bitwise identical to an
uninterrupted one, and that every refusal is one line.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from renorm.runtime import TrainConfig, load_run, train
from renorm.runtime import _checkpoint
from renorm.runtime._checkpoint import Interrupted, read_checkpoint, save_checkpoint
from renorm.runtime._cli import main
from renorm.symbolic import RenormError

from ..conftest import EXAMPLES

SPEC = EXAMPLES / "angularity_lo.toml"
FULL = os.environ.get("RENORM_FULL") == "1"
#: A short run whose checkpoints come often: kills and signals land between and during writes
#: (on a small grid: what is tested is the run's bookkeeping, not its accuracy).
FLAGS = ["--epochs", "300", "--refine", "0", "--checkpoint-every", "2", "--alpha-floor", "0", "--x-points", "64", "--alpha-points", "4"]
STEPS = 300
SMALL = dict(epochs=6, refine=0, x_points=64, alpha_points=4, checkpoint_every=2, alpha_floor=0.0)  # the window has its own tests
TIMEOUT = 300


def _train_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "renorm.runtime._cli", "train", str(SPEC), "--out", str(out), *FLAGS, *extra]


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_run(directory).flow.state_dict()


def _assert_bitwise_equal(one: dict, two: dict) -> None:
    assert one.keys() == two.keys()
    for key in one:
        # the values in hex, so that a failure says whether it is the last bit or a different run
        assert torch.equal(one[key], two[key]), (key, [float(v).hex() for v in one[key].flatten()[:4]], [float(v).hex() for v in two[key].flatten()[:4]])


def _one_line(capsys) -> str:
    r"""The one error line on stderr (a progress bar, also on stderr, aside)."""
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip() and not line.startswith("train:")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    r"""The uninterrupted run every interrupted one must reproduce bit for bit."""
    out = tmp_path_factory.mktemp("reference") / "run"
    subprocess.run(_train_command(out), check=True, capture_output=True, timeout=TIMEOUT)
    return _weights(out)


# kills and signals --------------------------------------------------------------------------
def test_kill_at_random_moments_loses_nothing_and_resumes_bitwise(tmp_path, reference):
    rng = random.Random(12)
    out = tmp_path / "run"
    kills = 10 if FULL else 3
    steps = []
    for _ in range(kills):
        checkpoint = out / "checkpoint.pt"
        resume = ["--resume"] if checkpoint.exists() else []
        before = checkpoint.stat().st_mtime_ns if resume else None
        process = subprocess.Popen(_train_command(out, *resume), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # start-up takes 3-5 s (it varies with the machine's load, and a kill before the first step
        # would test nothing), then a step every 10 ms with a checkpoint every 2 steps: the kill
        # comes at a random moment after this process's first write
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and process.poll() is None and not (checkpoint.exists() and checkpoint.stat().st_mtime_ns != before):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.5))
        process.kill()
        process.wait(timeout=TIMEOUT)
        if (out / "checkpoint.pt").exists():
            state = read_checkpoint(out / "checkpoint.pt")  # whole and unaltered, whatever the moment
            assert state["step"] % 2 == 0
            steps.append(state["step"])
    assert any(0 < step < STEPS for step in steps), f"no kill landed during training: {steps}"
    result = subprocess.run(_train_command(out, *(["--resume"] if (out / "checkpoint.pt").exists() else [])),
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not list(out.glob(".tmp-*")) and not list(out.glob(".*.tmp")), "orphaned temporary files were not cleaned"
    _assert_bitwise_equal(_weights(out), reference)


def test_sigterm_is_handled_like_sigint(tmp_path, reference):
    out = tmp_path / "run"
    process = subprocess.Popen(_train_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + TIMEOUT
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 128 + signal.SIGTERM
    (line,) = [line for line in stderr.splitlines() if line.startswith("renorm:")]
    step = int(line.split("at step ")[1].split(";")[0])
    assert "interrupted by SIGTERM" in line and load_run(out).step == step < STEPS
    subprocess.run(_train_command(out, "--resume"), check=True, capture_output=True, timeout=TIMEOUT)
    _assert_bitwise_equal(_weights(out), reference)


def test_a_second_signal_during_a_save_does_not_abort_it(tmp_path, monkeypatch):
    problem_run = train(_problem(), tmp_path / "straight", TrainConfig(**SMALL), progress=False)
    original = torch.save
    calls = {"n": 0}

    def save_while_signalled(obj, stream):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint (step 4): Ctrl-C twice while it is written
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        original(obj, stream)

    monkeypatch.setattr(_checkpoint.torch, "save", save_while_signalled)
    with pytest.raises(Interrupted) as stopped:
        train(_problem(), tmp_path / "b", TrainConfig(**SMALL), progress=False)
    assert stopped.value.step == 4 and load_run(tmp_path / "b").step == 4
    monkeypatch.setattr(_checkpoint.torch, "save", original)
    resumed = train(_problem(), tmp_path / "b", TrainConfig(**SMALL), resume=True, progress=False)
    _assert_bitwise_equal(resumed.flow.state_dict(), problem_run.flow.state_dict())


def _problem():
    from renorm.symbolic import load_spec

    return load_spec(SPEC)


# corrupted checkpoints ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    train(_problem(), out, TrainConfig(**SMALL), progress=False)
    return out


def _copy_run(trained: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    for name in ("spec.toml", "checkpoint.pt"):
        (out / name).write_bytes((trained / name).read_bytes())
    return out


def _rewrite(out: Path, change) -> None:
    r"""Loads the checkpoint, applies ``change`` and saves it with a fresh, valid checksum."""
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    change(state)
    state.pop("checksum", None)
    save_checkpoint(state, out / "checkpoint.pt")


def _flip_tensor_bytes(out: Path) -> None:
    path = out / "checkpoint.pt"
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        data_start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw = bytearray(path.read_bytes())
    for k in range(8):  # 8 changed bytes in the middle of the largest weight tensor
        raw[data_start + info.file_size // 2 + k] ^= 0x5A
    path.write_bytes(bytes(raw))


def _nan_weights(state):
    for tensor in state["state"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))


CORRUPTIONS = {
    "flipped-bytes": (_flip_tensor_bytes, "checksum does not match"),
    "nan-weights": (lambda out: _rewrite(out, _nan_weights), "non-finite weights"),
    "huge-degree": (lambda out: _rewrite(out, lambda s: s["flow"].update(degree=10**8)), "flow degree 100000000 is outside 1..64"),
    "missing-config": (lambda out: _rewrite(out, lambda s: s.pop("config")), "lacks 'config'"),
    "unknown-setting": (lambda out: _rewrite(out, lambda s: s["config"].update(colour=3)), "unknown setting 'colour'"),
    "bad-setting": (lambda out: _rewrite(out, lambda s: s["config"].update(degree="16")), "degree must be a int"),
    "unknown-map": (lambda out: _rewrite(out, lambda s: s["flow"].update(map="nope")), "unknown support map 'nope'"),
    "wrong-shapes": (lambda out: _rewrite(out, lambda s: s["flow"].update(degree=12)), "do not fit the flow"),
    "truncated": (lambda out: (out / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes()[:5000]), "not a readable renorm checkpoint"),
    "old-format": (lambda out: _rewrite(out, lambda s: None) or _set_format(out, 1), "format 1 had no checksum"),
}


def _set_format(out: Path, value: int) -> None:
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["format"] = value
    torch.save(state, out / "checkpoint.pt")


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize("command", ["eval", "resume"])
def test_corrupted_checkpoints_are_refused_in_one_line(trained, tmp_path, capsys, corruption, command):
    out = _copy_run(trained, tmp_path)
    damage, message = CORRUPTIONS[corruption]
    damage(out)
    argv = (["eval", str(out), "--alpha", "0.1", "--x", "0.1"] if command == "eval"
            else ["train", str(SPEC), "--out", str(out), "--resume", "--epochs", "8"])
    assert main(argv) == 2
    assert message in _one_line(capsys)


def test_a_pickle_payload_never_runs(tmp_path, capsys):
    out = _copy_run_spec_only(tmp_path)
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format": 2, "state": Payload()}, out / "checkpoint.pt")
    assert main(["eval", str(out), "--alpha", "0.1", "--x", "0.1"]) == 2
    assert "not a readable renorm checkpoint" in _one_line(capsys) and not marker.exists()


def _copy_run_spec_only(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    (out / "spec.toml").write_bytes(SPEC.read_bytes())
    return out


# write failures -----------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["is-a-file", "under-a-file"])
def test_unwritable_run_directory_is_one_line(tmp_path, capsys, where):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" if where == "is-a-file" else tmp_path / "file" / "run"
    assert main(["train", str(SPEC), "--out", str(out), "--epochs", "1"]) == 2
    assert "cannot write the run directory" in _one_line(capsys)


def test_read_only_file_system_is_one_line(tmp_path, capsys, monkeypatch):
    # simulated: as root, permissions do not stop writes, and a read-only mount needs privileges
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("renorm.runtime._train.tempfile.NamedTemporaryFile", read_only)
    assert main(["train", str(SPEC), "--out", str(tmp_path / "run"), "--epochs", "1"]) == 2
    assert "cannot write the run directory" in (line := _one_line(capsys)) and "Read-only file system" in line


def test_disk_full_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from renorm.codegen import _load

    original = _load.os.replace
    calls = {"n": 0}

    def fills_up(source, target):
        if str(target).endswith("checkpoint.pt"):
            calls["n"] += 1
            if calls["n"] == 3:  # the third checkpoint (step 6, the last) finds the disk full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(source, target)

    monkeypatch.setattr(_load.os, "replace", fills_up)
    with pytest.raises(RenormError, match=r"No space left on device; the last good checkpoint \(step 4\) is kept"):
        train(_problem(), tmp_path, TrainConfig(**SMALL), progress=False)
    assert load_run(tmp_path).step == 4
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".*.tmp")), "the failed write left its temporary file"


def test_run_keeps_the_trained_flow_when_plotting_fails(tmp_path, capsys):
    (tmp_path / "densities.png").mkdir()  # the plot cannot be written there
    assert main(["run", str(SPEC), "--out", str(tmp_path), "--epochs", "2", "--refine", "0"]) == 2
    line = _one_line(capsys)
    assert "cannot write the plots" in line and "the trained flow is kept" in line
    assert load_run(tmp_path).step == 2 and (tmp_path / "report.json").is_file()


# concurrent writers and existing runs -------------------------------------------------------
def test_a_second_writer_is_refused(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(_train_command(out, "--checkpoint-every", "1000"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + TIMEOUT
    while not ((out / ".lock").exists() and (out / ".lock").read_text().strip() == str(first.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(_train_command(out, "--seed", "1"), capture_output=True, text=True, timeout=TIMEOUT)
    first_rc = first.wait(timeout=TIMEOUT)
    assert second.returncode == 2 and f"is being written by another process (pid {first.pid})" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert first_rc == 0 and load_run(out).config.seed == 0


def test_existing_run_needs_resume_or_force(trained, tmp_path, capsys):
    out = _copy_run(trained, tmp_path)
    assert main(["train", str(SPEC), "--out", str(out), "--epochs", "2", "--refine", "0"]) == 2
    assert "already holds a run: continue it with --resume, or replace it with --force" in _one_line(capsys)
    assert main(["train", str(SPEC), "--out", str(out), "--epochs", "2", "--refine", "0", "--seed", "5", "--force"]) == 0
    replaced = load_run(out)
    assert replaced.step == 2 and replaced.config.seed == 5 and len(replaced.history) == 2


def test_resume_restores_the_runs_own_settings(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", str(SPEC), "--out", str(out)]
    assert main(base + ["--epochs", "4", "--refine", "0", "--seed", "3", "--lr", "0.02", "--checkpoint-every", "2"]) == 0
    first = load_run(out)
    assert main(base + ["--resume"]) == 0  # nothing left to do: the run's own 4 steps
    again = load_run(out)
    assert again.step == 4 and again.config == first.config
    _assert_bitwise_equal(again.flow.state_dict(), first.flow.state_dict())
    capsys.readouterr()
    assert main(base + ["--resume", "--epochs", "6"]) == 0
    assert "trained angularity_lo: 2 new steps (to step 6)" in capsys.readouterr().out
    longer = load_run(out)
    assert longer.step == 6 and longer.config.seed == 3 and longer.config.lr == 0.02
    capsys.readouterr()
    assert main(base + ["--resume", "--lr", "0.5"]) == 2
    assert "--lr 0.5 disagrees with the run's own lr = 0.02" in _one_line(capsys)
    assert main(base + ["--resume", "--force"]) == 2
    assert "give one of them" in _one_line(capsys)


def test_orphaned_temporary_files_are_cleaned_on_the_next_start(trained, tmp_path):
    out = _copy_run(trained, tmp_path)
    for name in (".tmp-abc123.pt", ".history.json.xyz.tmp"):
        (out / name).write_bytes(b"half-written")
    train(_problem(), out, TrainConfig(**{**SMALL, "epochs": 8}), resume=True, progress=False)
    assert not list(out.glob(".tmp-*")) and not list(out.glob(".*.tmp"))


def test_resume_at_the_phase_boundary_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    # a checkpoint at step == epochs is still the main phase's: the refinement that follows must
    # offer the flow Adam left to its early stopping, as the uninterrupted run does (it did not,
    # which changes the kept flow whenever the first L-BFGS step does not improve on Adam's)
    from renorm.runtime._train import _Best

    offers: list[float] = []
    original = _Best.offer
    monkeypatch.setattr(_Best, "offer", lambda self, value, flow: offers.append(value) or original(self, value, flow))
    straight = train(_problem(), tmp_path / "straight", TrainConfig(**{**SMALL, "refine": 3}), progress=False)
    expected, offers[:] = list(offers), []
    train(_problem(), tmp_path / "split", TrainConfig(**SMALL), progress=False)
    resumed = train(_problem(), tmp_path / "split", TrainConfig(**{**SMALL, "refine": 3}), resume=True, progress=False)
    assert offers == expected and len(expected) == 4  # the flow Adam left, then one per L-BFGS step
    assert resumed.step == straight.step
    _assert_bitwise_equal(resumed.flow.state_dict(), straight.flow.state_dict())
    assert [h.get("validation") for h in resumed.history] == [h.get("validation") for h in straight.history]


def test_resume_refuses_steps_a_run_cannot_take(tmp_path):
    out = tmp_path / "run"
    train(_problem(), out, TrainConfig(**{**SMALL, "refine": 2}), progress=False)
    with pytest.raises(RenormError, match="already in its L-BFGS refinement .* cannot return it to the main phase"):
        train(_problem(), out, TrainConfig(**{**SMALL, "epochs": 20, "refine": 2}), resume=True, progress=False)
    # a refinement that stopped early stays stopped: more --refine is refused, not silently a no-op
    _rewrite(out, lambda s: s["best"].update(stale=10))
    with pytest.raises(RenormError, match="refinement stopped at step 8 .* more steps would not change the flow"):
        train(_problem(), out, TrainConfig(**{**SMALL, "refine": 20}), resume=True, progress=False)
    assert load_run(out).step == 8
