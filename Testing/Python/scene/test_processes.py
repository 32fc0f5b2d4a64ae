"""Helper processes as Slicer runs them: which Python, hidden windows, UTF-8, and Cancel ending the
whole process tree, with a fake launcher that starts the real work as a grandchild sharing its
pipes (what the CTK launcher PythonSlicer does). POSIX for real; the Windows code path with the
platform switched, only the OS calls (process creation, taskkill) replaced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")

from AttentionUNetSegmentLib.scene import processes  # noqa: E402
from AttentionUNetSegmentLib.scene.job import CANCELLED, RUNNING, SegmentationJob  # noqa: E402

posix_only = pytest.mark.skipif(os.name == "nt", reason="drives real POSIX process groups")


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def _fake_launcher(folder: Path) -> tuple[Path, Path]:
    """An executable that, like PythonSlicer, starts the real interpreter as a child with the same
    stderr, then waits for it. The grandchild records its pid and environment, then works forever."""
    pid_file = folder / "grandchild.pid"
    launcher = folder / "PythonSlicer"
    launcher.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import os, subprocess, sys
        code = ("import os, sys, time; "
                "open({str(pid_file)!r} + '.tmp', 'w').write(f\\"{{os.getpid()}} {{os.environ.get('PYTHONIOENCODING')}}\\"); "
                "os.replace({str(pid_file)!r} + '.tmp', {str(pid_file)!r}); "
                "print('working', file=sys.stderr, flush=True); time.sleep(600)")
        sys.exit(subprocess.call([sys.executable, "-c", code]))
        """))
    launcher.chmod(0o755)
    return launcher, pid_file


def _start_job(tmp_path: Path, launcher: Path) -> SegmentationJob:
    image = sitk.Image([8, 8, 4], sitk.sitkInt16)
    return SegmentationJob(image, python_executable=str(launcher), work_root=str(tmp_path)).start()


def _wait_for(path: Path, timeout: float = 30.0) -> str:
    deadline = time.perf_counter() + timeout
    while not path.exists():
        assert time.perf_counter() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text()


def _wait_until_ended(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.perf_counter() + timeout
    while _alive(pid) and time.perf_counter() < deadline:
        time.sleep(0.02)
    return not _alive(pid)


@posix_only
def test_cancel_ends_launcher_and_grandchild_on_posix(tmp_path):
    launcher, pid_file = _fake_launcher(tmp_path)
    (tmp_path / "work").mkdir()
    job = _start_job(tmp_path / "work", launcher)
    grandchild_pid, encoding = _wait_for(pid_file).split()
    assert encoding == "utf-8"                       # PYTHONIOENCODING reaches the real interpreter
    assert job.poll().state == RUNNING
    start = time.perf_counter()
    job.cancel()
    assert time.perf_counter() - start < 0.3                 # returns at once (issue 19): the GUI thread
    assert job.poll().state == CANCELLED
    assert job.wait_stopped(timeout=5.0)
    assert job.process.poll() is not None, "the launcher still runs"
    assert _wait_until_ended(int(grandchild_pid)), "the real computation (grandchild) still runs"
    assert not job._thread.is_alive(), "the reader thread still waits on the pipe the grandchild held"
    assert not job.work_dir.exists()


@posix_only
def test_cancel_on_the_windows_code_path_kills_the_tree_hidden(tmp_path, monkeypatch):
    """Platform switched to Windows; process creation and taskkill are the only calls replaced:
    creation drops the Windows-only options (after recording them), taskkill /T /F is carried out
    on the process group, as Windows does on the process tree."""
    class FakeStartupInfo:
        def __init__(self):
            self.dwFlags, self.wShowWindow = 0, 1

    for name, value in {"STARTUPINFO": FakeStartupInfo, "STARTF_USESHOWWINDOW": 1, "SW_HIDE": 0,
                        "CREATE_NO_WINDOW": 0x08000000}.items():
        monkeypatch.setattr(subprocess, name, value, raising=False)
    monkeypatch.setattr(processes, "is_windows", lambda: True)
    real_popen, real_run = subprocess.Popen, subprocess.run
    created, killed = [], []

    def popen(args, **kwargs):
        created.append((args, dict(kwargs)))
        kwargs.pop("startupinfo", None)
        kwargs.pop("creationflags", None)
        return real_popen(args, start_new_session=True, **kwargs)

    def run(args, **kwargs):
        if args[0] != "taskkill":
            return real_run(args, **kwargs)
        killed.append((args, kwargs))
        os.killpg(int(args[args.index("/PID") + 1]), signal.SIGKILL)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(subprocess, "run", run)
    launcher, pid_file = _fake_launcher(tmp_path)
    (tmp_path / "work").mkdir()
    job = _start_job(tmp_path / "work", launcher)
    grandchild_pid = int(_wait_for(pid_file).split()[0])
    job.cancel()
    assert job.wait_stopped(timeout=5.0)

    (args, kwargs), = [c for c in created if c[0][0] == str(launcher)]
    assert kwargs["creationflags"] & subprocess.CREATE_NO_WINDOW
    assert kwargs["startupinfo"].dwFlags & subprocess.STARTF_USESHOWWINDOW
    assert kwargs["startupinfo"].wShowWindow == subprocess.SW_HIDE
    assert "start_new_session" not in kwargs
    (command, run_kwargs), = killed
    assert command == ["taskkill", "/T", "/F", "/PID", str(job.process.pid)]
    assert run_kwargs["creationflags"] & subprocess.CREATE_NO_WINDOW          # taskkill hidden too
    assert job.process.poll() is not None and _wait_until_ended(grandchild_pid)
    assert not job.work_dir.exists()


def test_hidden_window_options_per_platform(monkeypatch):
    assert processes.hidden_window_options() == {"start_new_session": True} or os.name == "nt"
    monkeypatch.setattr(processes, "is_windows", lambda: True)
    monkeypatch.setattr(subprocess, "STARTUPINFO", lambda: types.SimpleNamespace(dwFlags=0, wShowWindow=1),
                        raising=False)
    monkeypatch.setattr(subprocess, "STARTF_USESHOWWINDOW", 1, raising=False)
    monkeypatch.setattr(subprocess, "SW_HIDE", 0, raising=False)
    monkeypatch.setattr(subprocess, "CREATE_NO_WINDOW", 0x08000000, raising=False)
    options = processes.hidden_window_options()
    assert options["creationflags"] == 0x08000000
    assert options["startupinfo"].dwFlags == 1 and options["startupinfo"].wShowWindow == 0


def test_child_environment_is_utf8_unbuffered_with_the_lib_first():
    env = processes.child_environment({"PYTHONPATH": os.pathsep.join(["/a", "/b"]), "X": "1"}, "/lib")
    assert env["PYTHONPATH"].split(os.pathsep) == ["/lib", "/a", "/b"]
    assert env["PYTHONIOENCODING"] == "utf-8" and env["PYTHONUNBUFFERED"] == "1" and env["X"] == "1"
    assert Path(processes.lib_parent_dir(), "AttentionUNetSegmentLib", "scene", "processes.py").is_file()


def test_inside_slicer_the_python_is_pythonslicer_or_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(slicer, "app", None, raising=False)
    assert processes.python_executable() == sys.executable          # scripts, tests: this Python
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(slicerHome=str(tmp_path)), raising=False)
    monkeypatch.setattr(processes.shutil, "which", lambda name: None)
    with pytest.raises(processes.PythonSlicerNotFound, match=r"PythonSlicer was not found .*reinstall 3D Slicer"):
        processes.python_executable()                # never sys.executable: that is Slicer itself
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "PythonSlicer").write_text("")
    assert processes.python_executable() == str(tmp_path / "bin" / "PythonSlicer")
    monkeypatch.setattr(processes.shutil, "which", lambda name: "/opt/Slicer/bin/PythonSlicer")
    assert processes.python_executable() == "/opt/Slicer/bin/PythonSlicer"
    with pytest.raises(processes.PythonSlicerNotFound):
        monkeypatch.setattr(processes.shutil, "which", lambda name: None)
        (tmp_path / "bin" / "PythonSlicer").unlink()
        SegmentationJob(sitk.Image([4, 4, 4], sitk.sitkInt16))     # the job says so before starting
