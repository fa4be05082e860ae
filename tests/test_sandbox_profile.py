"""The sandbox's profile is data (sandbox.Profile), and bubblewrap's command line is built from
it: does the command line show of the machine exactly what the profile lists, with its caps?"""
import os

import pytest

from autograder.grader import sandbox

pytestmark = pytest.mark.skipif(not sandbox.shutil.which("bwrap"), reason="the command line is bubblewrap's")


def pairs(args, flag):
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_the_command_line_binds_what_the_profile_lists_and_nothing_else(tmp_path):
    work, extra = tmp_path / "work", tmp_path / "sockets"
    prof = sandbox.profile(work, writable=[str(extra)], readable=["/etc/hosts"], uid=200_001)
    args = prof.command()
    assert pairs(args, "--ro-bind") == list(prof.read_only) and "/etc/hosts" in prof.read_only
    assert str(sandbox.PACKAGE) in prof.read_only and not any(p.startswith(str(tmp_path)) for p in prof.read_only)
    assert pairs(args, "--bind") == [str(work), str(extra)]
    assert pairs(args, "--size") == [str(sandbox.LEARNER["shm_bytes"]), str(sandbox.LEARNER["tmp_bytes"])]
    assert pairs(args, "--tmpfs") == ["/dev/shm", "/tmp"] and pairs(args, "--chdir") == [str(work)]
    assert "--die-with-parent" in args and "--new-session" in args and pairs(args, "--cap-drop") == ["ALL"]
    if os.geteuid() == 0:  # no user namespace: it becomes uid, without capabilities
        assert {"--unshare-net", "--unshare-pid", "--unshare-ipc"} <= set(args)
        assert f"--reuid={prof.uid}" in args and args[-1] == "--"
    else:
        assert "--unshare-all" in args


def test_a_process_of_no_folder_of_its_own_starts_in_its_own_tmp():
    prof = sandbox.profile(None)
    assert prof.writable == () and prof.workdir == "/tmp"
    assert pairs(prof.command(), "--bind") == []

