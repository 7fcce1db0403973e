"""L2A variants with additive HPA (H1, H3, H4): the scanned custom-VJP
stack equals the unrolled reference in outputs and parameter gradients.

Each case switches on several alternatives at once (l2a_design.md
section 4); together with test_l2a_variants.py and
test_l2a_variants_replace.py every alternative is exercised.
"""

import pytest

import l2a_testing

# Many small programs, each run once: compile them cheaply.
pytestmark = pytest.mark.usefixtures('unoptimised_compiles')

CASES = {
    # H3 unnormalised, raw values (no LPA at all), no embedding slot, mean
    # fusion, no positional embedding.
    'static_raw_mean': {
        'hpa.weights': 'static', 'hpa.static_normalise': False,
        'hpa.value': 'raw', 'fusion': 'mean', 'pos_embed': 'none',
        'hpa.include_embedding': False},
    # Block summaries (rewritten slots: autodiff + remat), body-part pooled
    # compact keys and values (d_c = 8 < C: hpa_out), sequential backbone.
    'blocks_part_sequential': {
        'hpa.history': 'blocks', 'hpa.num_blocks': 2, 'lpa.mode': 'pool',
        'lpa.pool': 'part', 'lpa.dim': 8, 'backbone': 'sequential'},
    # One shared LPA (its gradient summed over layers by the custom VJP),
    # per-joint pooled keys, raw values, trunc-normal init.
    'shared_joint_pool_raw': {
        'lpa.mode': 'pool', 'lpa.pool': 'joint', 'hpa.value': 'raw',
        'lpa.shared': True, 'init': 'trunc_normal'},
    # H4 per-sample weights over per-frame pooled keys, sequential backbone
    # with one shared MLP.
    'sample_frame_pool': {
        'lpa.mode': 'pool', 'lpa.pool': 'frame', 'hpa.weights': 'sample',
        'backbone': 'sequential', 'shared_mlp': True},
    # Per-token weights from compact keys (d_c = 8), raw values, no
    # embedding slot.
    'compact_keys_raw_values': {
        'lpa.dim': 8, 'hpa.value': 'raw', 'hpa.include_embedding': False},
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_scan_equals_unrolled(name):
  l2a_testing.assert_paths_agree(CASES[name])
