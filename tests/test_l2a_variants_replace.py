"""L2A variants with replacing HPA (H2, Attention-Residuals style): the
scanned custom-VJP stack equals the unrolled reference in outputs and
parameter gradients. See test_l2a_variants_add.py for the coverage plan.
"""

import pytest

import l2a_testing

# Many small programs, each run once: compile them cheaply.
pytestmark = pytest.mark.usefixtures('unoptimised_compiles')

CASES = {
    # H2 + H4 weights, bottleneck LPA (P3), channel softmax fusion,
    # temperature sqrt(d_c).
    'sample_bottleneck_channel': {
        'hpa.mode': 'replace', 'hpa.weights': 'sample',
        'lpa.mode': 'bottleneck', 'lpa.dim': 8, 'fusion': 'channel_softmax',
        'hpa.temperature': 'sqrt_dim'},
    # H2 + H3 normalised static weights over compact LPA values (hpa_out and
    # final_hpa_out), last 2 slots only, one shared MLP after the fusion.
    'static_last_k_shared_mlp': {
        'hpa.mode': 'replace', 'hpa.weights': 'static', 'lpa.dim': 8,
        'hpa.history': 'last_k', 'hpa.last_k': 2, 'shared_mlp': True},
    # Block AttnRes: running sums of deltas, RMSNorm-only LPA, STCFormer
    # channel split, spatial embedding only.
    'blocks_rmsnorm_channel_split': {
        'hpa.mode': 'replace', 'hpa.history': 'blocks', 'hpa.num_blocks': 2,
        'lpa.mode': 'rmsnorm', 'fusion': 'channel_split',
        'pos_embed': 'spatial'},
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_scan_equals_unrolled(name):
  l2a_testing.assert_paths_agree(CASES[name])
