"""The lecture's network by name: its seed, its parameters and the intermediates whose
gradients Exercise 1 asks for. Plain data, no torch: the exercises' definitions read these,
and the class runner, which never computes a gradient, starts without importing torch."""

SEED = 2147483647  # the lecture's generator seed
PARAM_NAMES = ["C", "W1", "b1", "W2", "b2", "bngain", "bnbias"]

# The 26 gradients of Exercise 1, in the lecture's order.
GRAD_NAMES = ["logprobs", "probs", "counts_sum_inv", "counts_sum", "counts", "norm_logits",
              "logit_maxes", "logits", "h", "W2", "b2", "hpreact", "bngain", "bnbias", "bnraw",
              "bnvar_inv", "bnvar", "bndiff2", "bndiff", "bnmeani", "hprebn", "embcat", "W1",
              "b1", "emb", "C"]
