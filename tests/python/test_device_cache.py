"""The device tier of the expert cache on Vulkan: logits, routing and tokens bit-identical whatever
the device and host budgets, device hits and misses that make sense, a device budget below k
records refused, and the budget planner in stats() and `moeflux info`. Run with
MOEFLUX_VULKAN_VALIDATION=1 (a validation message fails). The CPU backend has no device tier."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import moeflux
from compare import QWEN3_MOE, requires_vulkan, vulkan
from test_vulkan import run

pytestmark = requires_vulkan
prompt = QWEN3_MOE.prompt

NAMES = ["qwen3_moe_base", "qwen3_moe_odd_tied"]


def sizes(path):
    """(k, total experts, host stride, device slot bytes) of a packed model."""
    stats = vulkan(path).stats()
    return (
        vulkan(path).info["experts_per_token"],
        int(stats["plan_total_experts"]),
        int(stats["cache_slot_bytes"]),
        int(stats["device_slot_bytes"]),
    )


@pytest.mark.parametrize("name", NAMES)
def test_bit_identical_across_device_and_host_budgets(name, packed):
    path = packed(name)
    k, total, stride, slot = sizes(path)
    ids = prompt(vulkan(path).info["vocab_size"])
    device = {"smallest": k * slot, "half": total * slot // 2, "all": None}
    host = {"smallest": k * stride, "all": None}
    results = {}
    for d_name, d_bytes in device.items():
        for h_name, h_bytes in host.items():
            model = vulkan(path, device_cache_bytes=d_bytes, cache_bytes=h_bytes)
            results[(d_name, h_name)] = run(model, ids)
            s = model.stats()
            assert s["device_hits"] + s["device_misses"] > 0
            assert s["device_bytes_uploaded"] > 0 and s["device_misses"] > 0
            assert s["device_slots"] == (total if d_bytes is None else min(total, d_bytes // slot))
            # the store reads only what the device tier lacks
            assert s["expert_hits"] + s["expert_misses"] == s["device_misses"]
            if d_name == "all":  # every expert fits: each uploaded at most once, never evicted
                assert s["device_misses"] <= total and s["device_evictions"] == 0
                assert s["device_bytes_uploaded"] <= total * slot
                # loaded at open, so decode steps route on the device without the host
                assert s["device_routed_layers"] > 0
                # a decode step then looks nothing up: every expert is held
                model.reset_stats()
                model.forward(ids[:1])
                again = model.stats()
                assert again["device_hits"] + again["device_misses"] == 0 and again["device_routed_layers"] > 0
                assert again["device_hit_rate"] == 1.0
            else:
                assert s["device_routed_layers"] == 0
            if d_name == "smallest":
                assert s["device_evictions"] > 0
    want = results[("all", "all")]
    for key, got in results.items():
        np.testing.assert_array_equal(got[0], want[0], err_msg=str(key))
        np.testing.assert_array_equal(got[1], want[1], err_msg=str(key))
        assert got[2] == want[2], key


def simulate_shared_pool(calls, slots, capacity):
    """Hits, misses and evictions of one pool of `slots` device slots shared by every MoE layer
    (util/slot_pools.h), fed as moe_block feeds it: per forward call and MoE layer, the call's
    experts (ascending) in batches of at most `capacity`; a batch's resident experts are pinned and
    made most recent (ascending), then its misses take the least recently used unpinned slots."""
    lru: list[tuple[int, int]] = []  # oldest first
    hits = misses = evictions = 0
    for routing in calls:  # [tokens, moe_layers, k]
        for layer in range(routing.shape[1]):
            unique = sorted(set(int(e) for e in routing[:, layer, :].ravel()))
            for begin in range(0, len(unique), capacity):
                batch = [(layer, e) for e in unique[begin : begin + capacity]]
                held = [key for key in batch if key in lru]
                for key in held:
                    lru.remove(key)
                    lru.append(key)
                hits += len(held)
                for key in batch:
                    if key in held:
                        continue
                    if len(lru) == slots:
                        lru.remove(next(old for old in lru if old not in batch))
                        evictions += 1
                    lru.append(key)
                    misses += 1
    return hits, misses, evictions


@pytest.mark.parametrize("name", NAMES)
def test_streaming_counts_what_the_policy_says(name, packed):
    """The smallest host budget (every device miss is read from disk, in batches of k) and a device
    tier one slot short of per-layer pools (one pool shared by every layer): each miss is uploaded
    as its read lands. Bits as with every expert resident, and the device tier's counters exactly
    what its policy gives for the routing that ran."""
    path = packed(name)
    k, total, stride, slot = sizes(path)
    resident = vulkan(path)
    ids = prompt(resident.info["vocab_size"])
    want = run(resident, ids)
    record = resident.stats()["device_bytes_uploaded"] / total  # every expert loaded once at open
    assert record == int(record) and 0 < record <= slot
    slots = resident.routing.experts.shape[1] * k - 1  # MoE layers x k - 1
    model = vulkan(path, device_cache_bytes=slots * slot, cache_bytes=k * stride)
    got = run(model, ids)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2]

    s = model.stats()
    assert s["device_slots"] == slots and s["device_routed_layers"] == 0
    routing = model.routing.experts
    split = len(ids) - 6  # run(): one prefill call, then one token per call
    calls = [routing[:split]] + [routing[i : i + 1] for i in range(split, len(routing))]
    hits, misses, evictions = simulate_shared_pool(calls, slots, k)
    assert (s["device_hits"], s["device_misses"], s["device_evictions"]) == (hits, misses, evictions)
    assert hits > 0 and evictions > 0
    assert s["device_bytes_uploaded"] == misses * record
    assert s["device_upload_seconds"] > 0
    # the store reads only what the device tier lacks, and its one-batch host tier holds little
    assert s["expert_hits"] + s["expert_misses"] == misses
    assert s["expert_bytes_read"] == s["expert_misses"] * stride


def test_warm_device_tier_serves_hits_without_uploads(packed):
    path = packed(NAMES[0])
    model = vulkan(path)
    ids = prompt(model.info["vocab_size"])
    first = model.forward(ids)
    model.reset()
    model.reset_stats()
    np.testing.assert_array_equal(model.forward(ids), first)
    s = model.stats()
    assert s["device_misses"] == 0 and s["device_bytes_uploaded"] == 0 and s["device_hits"] > 0


def test_device_budget_below_k_records_is_refused(packed):
    path = packed(NAMES[0])
    k, _, _, slot = sizes(path)
    with pytest.raises(moeflux.BudgetError, match=f"smallest device budget that works is {k * slot} bytes"):
        vulkan(path, device_cache_bytes=k * slot - 1)


def test_planner_choices_in_stats(packed):
    path = packed(NAMES[0])
    s = vulkan(path).stats()
    assert s["plan_host_source"] in ("planned", "all experts")
    assert s["plan_device_source"] in ("planned", "all experts")
    assert s["plan_host_min_bytes"] <= s["plan_host_cache_bytes"] <= s["plan_host_all_bytes"]
    assert s["plan_device_min_bytes"] <= s["plan_device_cache_bytes"] <= s["plan_device_all_bytes"]
    assert s["cache_bytes"] >= s["plan_host_cache_bytes"] - s["cache_slot_bytes"]
    assert s["device_cache_bytes"] <= s["plan_device_cache_bytes"]
    assert s["plan_device_heap_bytes"] > 0
    given = vulkan(path, cache_bytes=int(s["plan_host_min_bytes"]), device_cache_bytes=int(s["plan_device_min_bytes"]))
    g = given.stats()
    assert g["plan_host_source"] == "given" and g["plan_device_source"] == "given"
    assert g["plan_host_cache_bytes"] == s["plan_host_min_bytes"]
    assert g["device_cache_bytes"] == s["plan_device_min_bytes"]


def test_moeflux_info_prints_the_model_and_the_plan(packed):
    path = packed(NAMES[0])
    s = vulkan(path).stats()
    done = subprocess.run(
        [sys.executable, "-m", "moeflux.cli", "info", str(path), "--backend", "vulkan"],
        capture_output=True, text=True, env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for text in ("model type     qwen3_moe", "top-2", "expert dtypes", "dense bytes", "host cache", "device cache"):
        assert text in out, out
    assert f"{int(s['plan_device_cache_bytes'])} bytes" in out, out
    assert f"{int(s['plan_host_cache_bytes'])} bytes" in out, out


def test_cpu_backend_has_no_device_tier(packed):
    path = packed(NAMES[0])
    plain = moeflux.Model(path)
    ids = prompt(plain.info["vocab_size"])
    want = plain.forward(ids)
    model = moeflux.Model(path, device_cache_bytes=1)  # no device tier: ignored
    np.testing.assert_array_equal(model.forward(ids), want)
    s = model.stats()
    assert s["plan_device_source"] == "none" and not any(key.startswith("device_") for key in s)
    out = subprocess.run([sys.executable, "-m", "moeflux.cli", "info", str(path)], capture_output=True, text=True,
                         check=True).stdout
    assert "device cache   none" in out, out


def test_recorder_counters_and_the_gpu_profile_in_stats(packed, monkeypatch):
    path = packed(NAMES[0])
    ids = prompt(vulkan(path).info["vocab_size"])
    plain = vulkan(path)
    plain.forward(ids)
    s = plain.stats()
    assert s["vk_dispatches"] > 0 and s["vk_submits"] > 0 and s["vk_wait_seconds"] > 0
    assert not any(key.startswith("gpu_seconds.") for key in s)  # profiling is off by default
    monkeypatch.setenv("MOEFLUX_VULKAN_PROFILE", "1")
    profiled = vulkan(path)
    np.testing.assert_array_equal(profiled.forward(ids), vulkan(path).forward(ids))  # timestamps change nothing
    gpu = {k: v for k, v in profiled.stats().items() if k.startswith("gpu_seconds.")}
    # every kernel of a Qwen3-MoE prefill step has its time (timestamps after each command)
    assert {"gpu_seconds.matmul_tiled", "gpu_seconds.moe_route", "gpu_seconds.attention_inputs"} <= set(gpu)
    assert all(v >= 0 for v in gpu.values()) and sum(gpu.values()) > 0
    profiled.reset_stats()
    assert not any(k.startswith("gpu_seconds.") for k in profiled.stats())
