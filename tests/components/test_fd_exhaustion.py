"""More connections than file descriptors: the excess fail one by one with
EMFILE (on_failure), the others go on, and run() returns.  The kernel took
its own fds when it was made, so nothing crashes in run().  In a
subprocess, with a small RLIMIT_NOFILE."""
import json
import os
import subprocess
import sys
import textwrap

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")

SCRIPT = textwrap.dedent("""
    import collections, errno, json, resource, socket
    import cypoe
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    k = cypoe.Kernel()
    outcome = collections.Counter()
    ticks = []

    def success(c):
        outcome["success"] += 1
        m.shutdown(c)

    def failure(c, op, num, text):
        outcome[f"{op} {errno.errorcode.get(num, num)}"] += 1

    m = cypoe.TCPMulti(on_input=lambda c, r: None, on_success=success,
                       on_failure=failure, kernel=k)
    for _ in range(300):
        m.connect("127.0.0.1", port)
    k.delay(0.01, ticks.append, "timer")
    k.run()
    print(json.dumps({"outcome": outcome, "ticks": ticks, "left": m.connections}))
""")


def test_connections_beyond_the_fd_limit_fail_with_emfile_and_the_run_goes_on():
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    outcome = res["outcome"]
    assert sum(outcome.values()) == 300
    assert outcome["success"] > 0
    failures = {k: v for k, v in outcome.items() if k != "success"}
    assert failures and set(failures) == {"socket EMFILE"}, outcome
    assert res["ticks"] == ["timer"] and res["left"] == 0
