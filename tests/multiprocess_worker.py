"""One process of tests/test_multiprocess.py (a script, not a test module).

Trains the demo MLP (written with ``jax.nn.relu``, transformed by ``lj.leakify``)
data-parallel over a mesh of every device of every process, and tracks its dead units two
ways: a global ``jit`` update over the sharded batch, and a local tracker per process over
its own shard of the batch, merged across processes with ``tracker.merge`` after
``process_allgather``. Writes what it saw to an ``.npz`` file.

    python tests/multiprocess_worker.py OUT.npz --devices 2                    # one process
    python tests/multiprocess_worker.py OUT.npz --processes 2 --process-id I --port P
    python tests/multiprocess_worker.py --all DIR   # every run the test compares, into DIR

Exit code 77: this JAX cannot run CPU collectives with gloo (the test skips).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import socket
import subprocess
import sys
import time

GLOO_UNAVAILABLE = 77
STEPS, BATCH, LR, SIZES = 12, 256, 0.05, (64, 128, 128, 10)
TIMEOUT_S = 180  # for each group of processes run together
# --all's outputs in DIR: the two processes of one run, then one process with two devices
# (the same mesh) and one with one device.
TWO_PROCESSES = ("process0.npz", "process1.npz")
ONE_PROCESS = ("one_process_two_devices.npz", "one_process_one_device.npz")


def run_all(out: pathlib.Path) -> int:
    """Two processes on 127.0.0.1, then the single-process references, two at a time; each
    group is killed on a timeout or a failure, so that a process left waiting for its peer
    does not outlive the run. Returns the first nonzero exit code (or 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    two = [
        [str(out / name), "--processes", "2", "--process-id", str(i), "--port", str(port)]
        for i, name in enumerate(TWO_PROCESSES)
    ]
    one = [
        [str(out / name), "--devices", str(n)] for name, n in zip(ONE_PROCESS, (2, 1), strict=True)
    ]
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # each process sets its own device count
    for group in (two, one):
        procs = [subprocess.Popen([sys.executable, __file__, *args], env=env) for args in group]
        deadline = time.monotonic() + TIMEOUT_S
        try:
            for proc in procs:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"a process did not finish within {TIMEOUT_S} s", flush=True)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        codes = [proc.returncode for proc in procs]
        if GLOO_UNAVAILABLE in codes:
            return GLOO_UNAVAILABLE
        if any(codes):
            return next(code for code in codes if code)
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--all", action="store_true", help="every run, into the directory OUT")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--devices", type=int, default=1, help="single-process mesh size")
    return parser.parse_args(argv)


def start_jax(args: argparse.Namespace):
    import os

    if args.processes == 1:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    if args.processes > 1:
        try:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        except Exception as e:  # an unknown option: this JAX has no gloo collectives
            print(f"gloo CPU collectives unavailable: {e!r}", file=sys.stderr)
            sys.exit(GLOO_UNAVAILABLE)
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{args.port}",
            num_processes=args.processes,
            process_id=args.process_id,
            initialization_timeout=60,
        )
    return jax


def main(argv: list[str]) -> None:
    args = parse(argv)
    if args.all:
        sys.exit(run_all(pathlib.Path(args.out)))
    jax = start_jax(args)
    import jax.numpy as jnp
    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P
    from sklearn.datasets import load_digits

    import leakyjax as lj

    digits = load_digits()
    x_all = digits.data.astype(np.float32) / 16.0
    x_all = (x_all - x_all.mean(0)) / (x_all.std(0) + 1e-3)
    y_all = digits.target.astype(np.int32)

    def loss_fn(params, x, labels):
        for layer in params[:-1]:
            x = jax.nn.relu(x @ layer["w"] + layer["b"])
        logits = x @ params[-1]["w"] + params[-1]["b"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

    leaky_loss = lj.leakify(loss_fn, 0.01)
    tracker = lj.track_dead_units(leaky_loss)

    keys = jax.random.split(jax.random.key(0), len(SIZES) - 1)
    params = [
        {"w": np.asarray(lj.he_normal(0.01)(k, (m, n))), "b": np.zeros(n, np.float32)}
        for k, m, n in zip(keys, SIZES[:-1], SIZES[1:], strict=True)
    ]
    # The demo's shock: a quarter of the first layer's units pushed far negative, so that
    # the dead-unit masks have both values.
    params[0]["b"][:32] -= 20.0

    mesh = jax.make_mesh((len(jax.devices()),), ("data",))
    batch_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())

    def to_global(a, sharding):
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    params = jax.tree.map(lambda a: to_global(a, replicated), params)
    x0, y0 = x_all[:BATCH], y_all[:BATCH]
    state = jax.tree.map(
        lambda a: to_global(np.asarray(a), replicated), tracker.init(params, x0, y0)
    )

    @jax.jit
    def train_step(params, state, x, labels):
        (loss, state), grads = jax.value_and_grad(
            lambda p: tracker.update(state, p, x, labels), has_aux=True
        )(params)
        return jax.tree.map(lambda p, g: p - LR * g, params, grads), state, loss

    # Each process's own tracker over its own shard, on its own device.
    local_update = jax.jit(tracker.update)
    rows = BATCH // jax.process_count()
    mine = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
    local_state = tracker.init(params, x0[mine], y0[mine])

    def local(tree):
        return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)

    rng, losses = np.random.default_rng(0), []
    for _ in range(STEPS):
        idx = rng.integers(0, len(x_all), BATCH)
        x, labels = x_all[idx][mine], y_all[idx][mine]
        _, local_state = local_update(local_state, local(params), x, labels)
        x = jax.make_array_from_process_local_data(batch_sharding, x)
        labels = jax.make_array_from_process_local_data(batch_sharding, labels)
        params, state, loss = train_step(params, state, x, labels)
        losses.append(local(loss))

    gathered = multihost_utils.process_allgather(local_state)  # a leading process axis
    merged = jax.tree.map(lambda a: a[0], gathered)
    for i in range(1, jax.process_count()):
        merged = tracker.merge(merged, jax.tree.map(lambda a, i=i: a[i], gathered))

    out = {"losses": np.array(losses)}
    for i, layer in enumerate(local(params)):
        out[f"params/{i}/w"], out[f"params/{i}/b"] = layer["w"], layer["b"]
    for kind, tracked in (("global", local(state)), ("merged", merged)):
        for name, r in tracker.result(tracked).items():
            out[f"dead/{kind}/{name}"] = np.asarray(r.dead)
            out[f"examples/{kind}/{name}"] = np.asarray(r.examples)
    np.savez(args.out, **out)
    print(f"process {jax.process_index()} of {jax.process_count()}: done", flush=True)
    if args.processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
