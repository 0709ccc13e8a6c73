"""Deliberate bugs ("mutants"): each key claim of evsim must make the test suite fail when broken.

For every mutant below, the repository's working tree is copied to a scratch folder, one source
string is replaced (the mutant), and the tests named for it run there; the mutant is *caught*
when they fail. The copy is imported instead of the installed evsim (``PYTHONPATH`` points at
it, and ``evsim/training`` and ``evsim/datasets`` are linked in, as the wheel installs them),
and every run first checks that it really imports the copy.

Not part of ``pytest`` (each mutant recompiles the Numba kernels and runs tests: minutes in
all). Run from the repository root, with the dev environment active::

    python tests/mutants.py            # every mutant; exit status 1 if any survives
    python tests/mutants.py --list     # the mutants and the tests that must catch them
    python tests/mutants.py conv-synops-stride1 pickle-allowed   # some of them

A mutant whose source string is no longer found (the code moved) is reported as stale and
counts as a failure of this script: update its ``old`` string.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IGNORED = shutil.ignore_patterns(".git", ".venv", ".ci-venv", "__pycache__", "*.nbi", "*.nbc", ".pytest_cache",
                                 ".hypothesis", "runs", "dist", "build", "*.egg-info")


@dataclass(frozen=True)
class Mutant:
    name: str
    claim: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest node ids or files; the mutant must make them fail


# the pinned cases run first and catch most engine mutants within seconds; the drawn ones follow
HOSTILE = "tests/test_hostile_files.py::test_hostile_file_ends_in_one_line_and_exit_2"
GROUPED = "tests/test_engine_exact.py::test_pinned_cases_fire_in_every_layer[grouped]"
EXACT = ("tests/test_engine_exact.py::test_pinned_cases_fire_in_every_layer",
         "tests/test_engine_exact.py::test_step_mode_equals_dense_forward_in_float64")

MUTANTS = (
    # --- no pickle: model files are read with numpy alone, never unpickled
    # (the .npy header check refuses object arrays before numpy's allow_pickle=False would see them)
    Mutant("pickle-allowed", "no pickle", "evsim/model/file.py",
           "    if dtype.hasobject:\n", "    if False:\n",
           ("tests/test_engine_io.py::test_pickled_arrays_are_refused_without_being_executed",)),
    # --- each peer's NIR semantics, guarded by a file that peer exported
    Mutant("sinabs-lif-euler", "peer semantics", "evsim/interop/nir/semantics.py",
           "        leak = math.exp(-1.0 / tau)\n", "        leak = 1.0 - 1.0 / tau\n",
           ("tests/test_nir.py::test_peer_li_readout_and_lif_reproduced",)),
    # --- files from strangers: sizes before reads, nothing from outside the file
    Mutant("nir-dataset-size-unchecked", "sizes before reads", "evsim/interop/nir/h5access.py",
           "        if nbytes > self.budget:\n", "        if False:\n",
           (HOSTILE + "[nir: gzip bomb]", "tests/test_hostile_files.py::test_hostile_corpus_peak_memory_is_bounded")),
    Mutant("npz-model-size-unchecked", "sizes before reads", "evsim/model/file.py",
           "    if needed > MAX_MODEL_BYTES:\n", "    if False:\n",
           (HOSTILE + "[npz: graph needs 6.4 GB of weights]",)),
    Mutant("nir-external-storage-read", "nothing outside the file", "evsim/interop/nir/h5access.py",
           "        if plist.get_external_count():\n", "        if False:\n",
           (HOSTILE + "[nir: external storage]",)),
    # --- synaptic-operation counts
    Mutant("conv-synops-stride1", "synop counts", "evsim/engine/kernels.py",
           "                    synops += n * spikes\n", "                    synops += (n + C * (kx_hi > kx_lo)) * spikes\n",
           EXACT),
    Mutant("conv-synops-stride2", "synop counts", "evsim/engine/kernels.py",
           "                        synops += C * spikes\n", "                        synops += 2 * C * spikes\n",
           EXACT),
    Mutant("overlapping-pool-synops", "synop counts", "evsim/engine/kernels.py",
           "                window_sum[(oy * dst_w + ox) * C + c] += ev_sign[e]\n                synops += int(abs(ev_sign[e]))\n",
           "                window_sum[(oy * dst_w + ox) * C + c] += ev_sign[e]\n                synops += int(abs(ev_sign[e])) * (1 + (oy > oy_lo))\n",
           EXACT),
    Mutant("identity-synops", "synop counts", "evsim/engine/kernels.py",
           "            V[ev_index[e]] += ev_sign[e]\n            synops += int(abs(ev_sign[e]))\n",
           "            V[ev_index[e]] += ev_sign[e]\n            synops += 2 * int(abs(ev_sign[e]))\n",
           EXACT),
    Mutant("async-synops", "synop counts (asynchronous mode)", "evsim/engine/kernels.py",
           "            synops += added\n            n_in += e - heads[r]\n",
           "            synops += added + (e - heads[r])\n            n_in += e - heads[r]\n",
           EXACT),
    # --- step mode equals the dense forward
    Mutant("swap-height-width", "step == dense", "evsim/engine/layers.py",
           "table[q, kernels.P_SRC_C : kernels.P_SRC_W + 1] = src",
           "table[q, kernels.P_SRC_C : kernels.P_SRC_W + 1] = (src[0], src[2], src[1])",
           EXACT),
    # a window's spike sum over k^2, added once, is avg_pool2d's average: 1/9 added per spike is not
    Mutant("pool-adds-per-spike", "step == dense (3x3 average pooling)", "evsim/engine/kernels.py",
           "    V[neuron] += window_sum[neuron] / divisor\n",
           "    n = int(window_sum[neuron])\n    for _ in range(abs(n)):\n"
           "        V[neuron] += (V.dtype.type(1.0) if n > 0 else V.dtype.type(-1.0)) / divisor\n",
           ("tests/test_engine_exact.py::test_a_full_window_averages_to_exactly_its_threshold",)),
    Mutant("fuse-inexact-pools", "step == dense (3x3 average pooling, fused)", "evsim/engine/step.py",
           "            and kernels.exact_shares(math.log(pool.neuron.leak), pool_divisor_of(pool)))",
           "            and True)",
           ("tests/test_engine_exact.py::test_a_full_window_averages_to_exactly_its_threshold",)),
    Mutant("leak-off-by-one", "step == dense", "evsim/engine/kernels.py",
           "        return leak_table[int(gap)]\n", "        return leak_table[int(gap) - 1]\n",
           EXACT),
    Mutant("conv-kernel-not-flipped", "step == dense", "evsim/model/ops.py",
           "return np.ascontiguousarray(by_input[:, :, ::-1, :])", "return np.ascontiguousarray(by_input)",
           EXACT),
    Mutant("async-leak-table-shifted", "async leak lookup == exp", "evsim/engine/kernels.py",
           "        table[g] = math.exp(log_leak * float(g))\n", "        table[g] = math.exp(log_leak * float(g + 1))\n",
           ("tests/test_engine_async.py::test_leak_table_gives_exactly_the_exponential",)),
    Mutant("async-one-conv-rounding", "async fused leak+add == two passes", "evsim/engine/kernels.py",
           "        v[i] = v.dtype.type(v[i] * factor) + sign * w[i]\n", "        v[i] = v[i] * factor + sign * w[i]\n",
           ("tests/test_engine_async.py::test_a_lone_conv_event_drains_as_the_general_path_does",)),
    Mutant("async-one-conv-kernel-row", "async fused leak+add == two passes", "evsim/engine/kernels.py",
           "        wrow = woff + ((c * k + ky) * k + k - 1 - kx_hi) * C\n", "        wrow = woff + ((c * k + ky) * k + kx_lo) * C\n",
           ("tests/test_engine_async.py::test_a_lone_conv_event_drains_as_the_general_path_does",)),
    # --- the branch-free drain: mark the reached units, leak the new ones, add unchecked (issue 27)
    Mutant("mark-pool-window-short", "every reached unit leaked and tested", "evsim/engine/kernels.py",
           "                for ox in range(ox_lo, ox_hi + 1):\n                    n_touched = _list(",
           "                for ox in range(ox_lo, ox_hi):\n                    n_touched = _list(",
           EXACT),
    Mutant("mark-misses-last-column", "every reached unit leaked and tested", "evsim/engine/kernels.py",
           "        return max(0, y + pad - k + 1), min(size - 1, y + pad)\n",
           "        return max(0, y + pad - k + 1), min(size - 1, y + pad - 1)\n",
           EXACT),
    Mutant("mark-strided-reach", "every reached unit leaked and tested", "evsim/engine/kernels.py",
           "    hi = min(size - 1, (y + pad) // s)\n", "    hi = min(size - 1, (y + pad - 1) // s)\n",
           EXACT),
    Mutant("leak-skips-first-new-unit", "every new unit leaked", "evsim/engine/kernels.py",
           "    for i in range(first, n_touched):\n        _leak_unit(", "    for i in range(first + 1, n_touched):\n        _leak_unit(",
           EXACT),
    Mutant("float32-bound-rounds-up", "float32 test == float64 comparison", "evsim/engine/kernels.py",
           "    if bound > threshold:\n        bound = np.nextafter(bound, V.dtype.type(-np.inf))\n", "",
           ("tests/test_engine_exact.py::test_a_float32_membrane_is_compared_with_the_float64_threshold",)),
    Mutant("fire-mask-loses-block", "units wider than 64 channels", "evsim/engine/kernels.py",
           "            out_index[n_out] = base + lo + co\n", "            out_index[n_out] = base + co\n",
           ("tests/test_engine_exact.py::test_units_wider_than_a_machine_word",)),
    # --- steps by row masks (kernels._by_rows): the same bits, a step's spikes in first-touch order
    Mutant("rows-fire-in-raster-order", "spikes in first-touch order", "evsim/engine/kernels.py",
           "    f = chunk_bits[i] & hot[oy]\n", "    f = hot[oy]\n",
           ("tests/test_engine_rows.py::test_lenet_nmnist_convolutions_on_real_recordings",)),
    Mutant("rows-strided-low-bit-first", "spikes in first-touch order", "evsim/engine/kernels.py",
           "    ascending = oy >= 0\n", "    ascending = True\n",
           ("tests/test_engine_rows.py::test_strided_and_multi_source_convolutions",)),
    Mutant("rows-leak-skips-run-start", "every new pixel leaked", "evsim/engine/kernels.py",
           "            for u in range(base + a, base + a + length):\n                gap",
           "            for u in range(base + a + 1, base + a + length):\n                gap",
           EXACT),
    Mutant("rows-test-short-run", "every reached pixel tested", "evsim/engine/kernels.py",
           "            if _any_above(V[base * C : (base + length) * C], bound):\n",
           "            if _any_above(V[base * C : (base + length - 1) * C], bound):\n",
           EXACT),
    Mutant("rows-take-grouped-convs", "a grouped conv stays off the row steps", "evsim/engine/kernels.py",
           "projections[q, P_OP] != OP_CONV or projections[q, P_GROUPS] != 1\n",
           "projections[q, P_OP] != OP_CONV\n",
           EXACT),
    Mutant("batch-keeps-state", "batch == run", "evsim/engine/batch.py",
           "    Vw[:] = 0\n", "",
           EXACT),
    Mutant("batch-gather-unshifted", "batch == run", "evsim/engine/batch.py",
           "= src_offsets + total\n", "= src_offsets\n",
           EXACT),
    # --- the asynchronous stream does not depend on where chunks are cut
    Mutant("reset-state-per-chunk", "chunk independence", "evsim/engine/asynchronous.py",
           "        state = self.states[i]\n", "        state = self.states[i]\n        state.reset()\n",
           ("tests/test_engine_async.py::test_stream_result_does_not_depend_on_chunk_size",)),
    Mutant("split-simultaneous-events", "chunk independence", "evsim/engine/asynchronous.py",
           'cut = int(np.searchsorted(events.time, events.time[-1], side="left"))', "cut = len(events)",
           ("tests/test_engine_async.py::test_stream_result_does_not_depend_on_chunk_size",)),
    Mutant("merge-ignores-horizon", "chunk independence, unequal delays", "evsim/engine/asynchronous.py",
           "            ready_before = min(horizons[s] for s in layer.sources)\n", "            ready_before = math.inf\n",
           ("tests/test_engine_async.py::test_async_unequal_path_delays_merge_in_time_order",)),
    # --- the op table's fan-out, which the regulariser prices spikes by
    # --- grouped convolutions: each event reaches its own group's channels, through its own weights
    Mutant("grouped-reach-group0", "grouped conv: step == dense", "evsim/engine/kernels.py",
           "        channel0 = (c // in_per_group) * run\n", "        channel0 = 0\n",
           (GROUPED,)),
    Mutant("grouped-weight-offset", "grouped conv: step == dense", "evsim/engine/kernels.py",
           "            row = woff + (c * k + y + pad - oy * s) * k * run",
           "            row = woff + ((c % in_per_group) * k + y + pad - oy * s) * k * run",
           (GROUPED,)),
    Mutant("grouped-synops-all-channels", "grouped conv: synop counts", "evsim/engine/kernels.py",
           "max(ox_hi - ox_lo + 1, 0) * run * int(abs(sign))", "max(ox_hi - ox_lo + 1, 0) * C * int(abs(sign))",
           (GROUPED,)),
    Mutant("grouped-fan-out-all-channels", "grouped conv: fan-out == engine synops", "evsim/model/ops.py",
           "(dst[0] // proj.groups if proj.op == Op.CONV else 1)", "(dst[0] if proj.op == Op.CONV else 1)",
           ("tests/test_ops.py::test_the_op_table_agrees_with_torch_autograd_and_the_oracle", GROUPED)),
    Mutant("fan-out-window-short", "fan-out == engine synops", "evsim/model/ops.py",
           "counts[max(start, 0) : max(start + kernel, 0)] += 1", "counts[max(start, 0) : max(start + kernel - 1, 0)] += 1",
           ("tests/test_ops.py", "tests/test_regularizers.py::test_fan_outs_at_the_borders")),
    # --- evsim.load reads event files; a bare Network refuses a path (no hidden registration)
    Mutant("load-without-reader", "load and Network agree on paths", "evsim/runtime/load.py",
           "return Network.from_file(path_or_name, dtype=dtype, read_file=read_events)",
           "return Network.from_file(path_or_name, dtype=dtype)",
           ("tests/test_first_hour.py::test_load_and_network_behave_the_same_on_a_path",)),
    # --- the gradient formula (paper eq. 22-24)
    Mutant("no-leak-correction", "gradient formula", "training/neurons.py",
           "factor = trace.mul_(math.log(leak))", "factor = trace.mul_(0.0)",
           ("tests/test_training.py::test_gradient_of_a_neuron_firing_every_step_is_the_closed_form",
            "tests/test_training.py::test_gradients_equal_the_authors_formulation")),
    Mutant("correction-over-T", "gradient formula", "training/neurons.py",
           "div_(count.clamp(min=1.0))", "div_(spikes.shape[0])",
           ("tests/test_training.py::test_gradient_of_a_neuron_firing_every_step_is_the_closed_form",
            "tests/test_training.py::test_gradients_equal_the_authors_formulation")),
    Mutant("surrogate-ignores-threshold", "gradient formula", "evsim/model/neuron.py",
           "return 1.0 / self.threshold, True", "return 1.0, True",
           ("tests/test_training.py::test_gradient_of_a_neuron_firing_every_step_is_the_closed_form",)),
    # --- readers and the engine's input boundary reject what lies outside the sensor
    Mutant("engine-no-y-bound", "reader rejection", "evsim/events.py",
           "bad = (x < 0) | (x >= width) | (y < 0) | (y >= height)", "bad = (x < 0) | (x >= width)",
           ("tests/test_engine_io.py::test_events_outside_the_input_are_rejected",)),
    Mutant("nmnist-no-bounds", "reader rejection", "datasets/nmnist.py",
           "outside = (x[index] >= SENSOR_SIZE[0]) | (y[index] >= SENSOR_SIZE[1])", "outside = x[index] < 0",
           ("tests/test_formats.py::test_corrupted_word_mid_stream",)),
    Mutant("prophesee-no-sensor-bounds", "reader rejection", "datasets/prophesee.py",
           "        bad |= (x >= width) | (y >= height)\n", "        pass\n",
           ("tests/test_formats.py",)),
    # --- training data: held-out stays held out, augmentation keeps the label
    Mutant("limit-range-from-zero", "training data", "datasets/samples.py",
           "permutation(count)[start:stop]", "permutation(count)[:stop]",
           ("tests/test_training_data.py::test_limit_range_takes_what_a_shorter_limit_left_out",)),
    Mutant("mnist-shifts-flip", "training data", "datasets/samples.py",
           "padding=MNIST_SHIFT, flip=False)", "padding=MNIST_SHIFT, flip=True)",
           ("tests/test_training_data.py::test_mnist_shifts_move_digits_without_flipping_them",)),
    Mutant("mix-same-draw-every-epoch", "training data", "datasets/samples.py",
           "start = (epoch * per_epoch) % count", "start = 0",
           ("tests/test_training_data.py::test_epoch_draws_cover_the_pool_before_repeating",)),
    Mutant("mix-simulated-dropped", "training data", "datasets/samples.py",
           "        return int(self._starts[-1])", "        return int(self._starts[1])",
           ("tests/test_train_sparse_cli.py::test_mix_simulated_adds_a_fresh_draw_of_simulated_recordings_each_epoch",)),
    Mutant("recurrence-kernel-leak-correction", "training gradients", "training/recurrence.py",
           "                    trace[i - lo] = trace[i - lo] * leak + s\n",
           "                    trace[i - lo] = trace[i - lo] + s\n",
           ("tests/test_training_recurrence.py",)),
    Mutant("recurrence-kernel-path-cut", "training gradients", "training/recurrence.py",
           "if fired[t, i] else grad[t + 1, i]", "if fired[t, i] else zero",
           ("tests/test_training_recurrence.py",)),
    Mutant("recurrence-kernel-count-gradient", "training gradients", "training/recurrence.py",
           "                    g = g + grad_count[i]\n", "                    g = g + grad_count[i] * grad_count[i]\n",
           ("tests/test_training_recurrence.py::test_dropout_counts_and_pools_in_the_kernels_keep_every_gradient",)),
    Mutant("recurrence-kernel-mask-order", "training gradients", "training/recurrence.py",
           "g = grad_spikes[t, i] * mask[i] if masked else grad_spikes[t, i]",
           "g = grad_spikes[t, i] if masked else grad_spikes[t, i]",
           ("tests/test_training_recurrence.py::test_dropout_counts_and_pools_in_the_kernels_keep_every_gradient",)),
    Mutant("recurrence-kernel-pool-gradient", "training gradients", "training/recurrence.py",
           "g = zero + grad_pooled[t, b, py, px, c] / divisor if", "g = zero + grad_pooled[t, b, py, px, c] if",
           ("tests/test_training_recurrence.py::test_dropout_counts_and_pools_in_the_kernels_keep_every_gradient",)),
    Mutant("recurrence-kernel-pool-divisor", "training gradients", "training/recurrence.py",
           "pooled[t, b, band, px * channels + c] = total / divisor", "pooled[t, b, band, px * channels + c] = total / kernel",
           ("tests/test_training_recurrence.py::test_dropout_counts_and_pools_in_the_kernels_keep_every_gradient",)),
    # --- issue 30: no silent wrong answer, no lost work
    Mutant("silent-input-runs", "no silent class 0", "evsim/events.py",
           "    if count == 0:\n        raise InputError(\"the input holds no spikes",
           "    if count < 0:\n        raise InputError(\"the input holds no spikes",
           ("tests/test_first_hour.py::test_an_input_with_no_spikes_is_an_error_not_class_0",)),
    Mutant("negative-counts-taken", "no silent wrong answer", "evsim/events.py",
           "    if low < 0 and not signed:", "    if low < -1 and not signed:",
           ("tests/test_first_hour.py::test_negative_or_unscaled_spike_counts_are_refused",)),
    Mutant("crowded-steps-silent", "timestamps in µs", "evsim/events.py",
           "len(occupied) <= CROWDED_STEPS:", "len(occupied) < CROWDED_STEPS:",
           ("tests/test_first_hour.py::test_timestamps_in_the_wrong_unit_warn_or_fail_naming_microseconds",)),
    Mutant("out-replaced-silently", "no lost work", "evsim/cli/common.py",
           "    if path.exists() and not force:", "    if path.is_dir() and not force:",
           ("tests/test_first_hour_cli.py::test_an_existing_output_is_replaced_only_with_force",)),
    Mutant("eval-draws-its-own-spikes", "eval equals run", "training/trainer.py",
           "                         seed=seed)", "                         seed=None)",
           ("tests/test_first_hour_cli.py::test_eval_and_run_draw_the_same_poisson_spikes",)),
    # --- surrogate-gradient BPTT (the comparison rule): the leak and the reset in the path through time
    Mutant("bptt-leak-dropped", "BPTT gradients", "training/bptt.py",
           "masked_fill(fired[t], 0.0), alpha=ctx.leak)", "masked_fill(fired[t], 0.0), alpha=1.0)",
           ("tests/test_bptt.py",)),
    Mutant("bptt-reset-ignored", "BPTT gradients", "training/bptt.py",
           "grad[t + 1].masked_fill(fired[t], 0.0)", "grad[t + 1]",
           ("tests/test_bptt.py",)),
)


def scratch_copy(destination: Path) -> None:
    shutil.copytree(REPO, destination, ignore=IGNORED, symlinks=True)  # copy2: modification times kept
    # the installed layout: training/ and datasets/ are evsim.training and evsim.datasets
    for name in ("training", "datasets"):
        link = destination / "evsim" / name
        if not link.exists():
            link.symlink_to(destination / name, target_is_directory=True)


NUMBA_CACHE = Path(tempfile.gettempdir()) / "evsim-mutants-numba"
"""Shared by every mutant: each copy sits at the same path with the original modification times,
so only a mutated kernel file is compiled again (Numba keys its cache by path and time)."""


def environment(copy: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["HYPOTHESIS_PROFILE"] = "ci"  # derandomised: a mutant is caught, or not, on every run
    env.pop("CI", None)
    env["NUMBA_CACHE_DIR"] = str(NUMBA_CACHE)
    return env


def imports_the_copy(copy: Path, env: dict) -> None:
    code = ("import evsim, evsim.engine.kernels, evsim.training, evsim.datasets; "
            "print(evsim.__file__); print(evsim.training.__path__[0]); print(evsim.datasets.__path__[0])")
    lines = subprocess.run([sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True,
                           check=True).stdout.split()
    resolved = [str(Path(line).resolve()) for line in lines]
    if not all(path.startswith(str(copy.resolve())) for path in resolved):
        raise SystemExit(f"the scratch copy is not what gets imported: {resolved}")


def restamp_dependents(target: Path) -> None:
    """Give the other compiled files beside a mutated one a new modification time. Numba keys a
    cached function by its own file alone, and e.g. evsim/engine/batch.py's functions inline
    kernels.py's: left with their stamps, they would load from the shared cache unmutated."""
    for other in target.parent.glob("*.py"):
        if other != target and "@njit" in other.read_text():
            os.utime(other)


def run_mutant(mutant: Mutant, workspace: Path) -> tuple[str, str]:
    """('caught' | 'SURVIVED' | 'STALE', detail)."""
    copy = workspace / "copy"
    shutil.rmtree(copy, ignore_errors=True)
    scratch_copy(copy)
    target = copy / mutant.path
    source = target.read_text()
    if source.count(mutant.old) != 1:
        return "STALE", f"{mutant.path}: the string to replace occurs {source.count(mutant.old)} times"
    target.write_text(source.replace(mutant.old, mutant.new))
    restamp_dependents(target)
    env = environment(copy)
    imports_the_copy(copy, env)
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", *mutant.tests]
    done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True)
    tail = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    shutil.rmtree(copy, ignore_errors=True)
    if done.returncode == 1:
        return "caught", (tail[0] if tail else summary)
    if done.returncode == 0:
        return "SURVIVED", summary
    return "SURVIVED", f"pytest exit status {done.returncode} (not a test failure): {summary}\n{done.stderr[-2000:]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and the tests that must catch them")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(unknown)} (see --list)")
    chosen = [known[n] for n in args.names] if args.names else list(MUTANTS)
    if args.list:
        for m in chosen:
            print(f"{m.name:28s} {m.claim:34s} {m.path}: {' '.join(m.tests)}")
        return 0
    failures = 0
    workspace = Path(tempfile.gettempdir()) / "evsim-mutants"  # a fixed path, for the Numba cache
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir()
    try:
        for m in chosen:
            start = time.perf_counter()
            status, detail = run_mutant(m, workspace)
            failures += status != "caught"
            print(f"{status:8s} {m.name:28s} ({m.claim}; {time.perf_counter() - start:.0f} s) {detail}", flush=True)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    print(f"{len(chosen) - failures} of {len(chosen)} mutants caught")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
