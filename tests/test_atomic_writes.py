"""Every file the project writes is whole or absent, and a write killed midway leaves no lasting litter.

Models, predictions and plots all go through :mod:`backprop_core.atomic`: a new
file beside the target, renamed over it.  A writer killed mid-write (SIGKILL)
cannot remove its temporary file; the next write of the same target does.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from backprop_core import atomic, cli, owners
from backprop_core.persistence import load_parameters, save_parameters

from test_persistence import assert_is, model


def _dead_pid() -> int:
    """The id of a process that has ended (and, a moment later, is very unlikely to be reused)."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           timeout=60)
    return int(ended.stdout)


def test_a_save_killed_midway_leaves_a_temporary_file_that_the_next_save_removes(tmp_path, children):
    path = tmp_path / "model.npz"
    saver = children([sys.executable, "-c", f'''
import sys, time, numpy as np
from backprop_core import persistence
from test_persistence import model

def savez(f, **arrays):  # a slow disk: half a model written, then a wait
    f.write(b"PK" + bytes(4096)); f.flush()
    print("writing", flush=True); time.sleep(600)

np.savez = savez
persistence.save_parameters({str(path)!r}, *model(1))
'''], stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(__file__))
    assert saver.stdout.readline() == "writing\n"
    saver.kill()  # SIGKILL: nothing in the process runs, its temporary file stays
    saver.wait(timeout=60)
    left = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(f".model.npz.{saver.pid}n"), left
    save_parameters(path, *model(2))
    assert os.listdir(tmp_path) == ["model.npz"]
    assert_is(path, 2)


def test_only_the_targets_temporary_files_of_writers_that_ended_are_removed(tmp_path):
    here = owners.pid_namespace()
    dead, alive = f"{_dead_pid()}n{here}", owners.tag()
    names = [f".model.npz.{dead}.abc123.tmp", f".model.npz.{alive}.def456.tmp",  # a writer still at work: kept
             f".other.npz.{dead}.abc123.tmp", "model.npz.tmp", f".model.npz.{dead}.txt"]  # not this target's, not ours
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    save_parameters(tmp_path / "model.npz", *model(1))
    assert sorted(os.listdir(tmp_path)) == sorted(["model.npz", *names[1:]])


@pytest.mark.skipif(owners.pid_namespace() is None, reason="the OS does not say which pid namespace a process is in")
def test_temporary_files_of_other_pid_namespaces_or_untagged_are_kept(tmp_path):
    # A folder shared with a container: its writers' pids name nothing here, dead-looking or not.
    dead = _dead_pid()
    names = [f".model.npz.{dead}n{owners.pid_namespace() + 1}.abc123.tmp", f".model.npz.{dead}.abc123.tmp"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    save_parameters(tmp_path / "model.npz", *model(1))
    assert sorted(os.listdir(tmp_path)) == sorted(["model.npz", *names])


def test_a_long_targets_temporary_files_are_found_by_its_name_cut_as_they_were_named(tmp_path):
    target = tmp_path / ("m" * 200 + ".npz")
    stale = tmp_path / f".{target.name[:atomic.NAME_CHARS]}.{_dead_pid()}n{owners.pid_namespace()}.abc123.tmp"
    stale.write_bytes(b"x")
    save_parameters(target, *model(1))
    assert os.listdir(tmp_path) == [target.name]


# -- the command line's outputs --------------------------------------------------------------------

@pytest.fixture
def saved_model(tmp_path):
    save_parameters(tmp_path / "m.npz", *model(1))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((50, 2)))
    return tmp_path


def test_predictions_that_cannot_be_written_whole_leave_the_old_file(saved_model, monkeypatch, capsys):
    output = saved_model / "p.csv"
    output.write_text("prediction\nthe old file\n")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    status = cli.main(["predict", str(saved_model / "m.npz"), "--data", str(saved_model / "x.npy"),
                       "--output", str(output)])
    monkeypatch.undo()
    assert status == 2
    assert capsys.readouterr().err == f"backprop-core: error: cannot write {output}: No space left on device\n"
    assert output.read_text() == "prediction\nthe old file\n"
    assert sorted(os.listdir(saved_model)) == ["m.npz", "p.csv", "x.npy"]


def test_a_dash_output_is_standard_output_not_a_file(saved_model, capsys, monkeypatch):
    monkeypatch.chdir(saved_model)
    assert cli.main(["predict", "m.npz", "--data", "x.npy", "--output", "-"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "prediction" and len(out.splitlines()) == 51
    assert not (saved_model / "-").exists()


def test_a_plot_named_without_a_suffix_is_written_under_that_name_and_reported_so(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib", reason="plots need matplotlib")
    import json

    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--iterations", "100", "--plot", "fig", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plot"] == "fig"
    assert os.listdir(tmp_path) == ["fig"]
    assert (tmp_path / "fig").read_bytes().startswith(b"\x89PNG")


def test_a_model_saved_by_the_command_line_replaces_the_old_one_whole(tmp_path, capsys):
    save_parameters(tmp_path / "m.npz", *model(1))
    assert cli.main(["train", "--iterations", "100", "--quiet", "--save", str(tmp_path / "m.npz")]) == 0
    params, meta = load_parameters(tmp_path / "m.npz")
    assert meta["n_iter"] == 100 and os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.skipif(not os.path.exists(os.devnull), reason="no null device here")
def test_a_device_at_the_target_is_written_into_never_replaced(saved_model, capsys):
    status = cli.main(["predict", str(saved_model / "m.npz"), "--data", str(saved_model / "x.npy"),
                       "--output", os.devnull])
    assert status == 0, capsys.readouterr().err
    assert not os.path.isfile(os.devnull), "the null device was replaced by a file"
    assert not [name for name in os.listdir(os.path.dirname(os.devnull)) if name.startswith(".null.")]
