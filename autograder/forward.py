"""Exercise 4's forward pass: all the course code that the process running learner code
needs (it holds no gradient code)."""
import torch
import torch.nn.functional as F

BN_EPS = 1e-5


def forward_ex4(Xb, Yb, parameters):
    """Exercise 4's forward pass: loss and the cache of intermediates the manual backward pass
    reads. parameters: [C, W1, b1, W2, b2, bngain, bnbias].

    BatchNorm's variance is Exercise 1's (the sum of bndiff**2 over n - 1), not
    hprebn.var(0, unbiased=True): the same numbers, but it reuses bndiff, which the
    normalisation needs anyway, where torch 2.13's var costs as much as the rest of the layer."""
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    n = Xb.shape[0]
    emb = C[Xb]                                     # (n, block_size, n_embd)
    embcat = emb.view(n, -1)                        # (n, block_size * n_embd)
    hprebn = embcat @ W1 + b1                       # (n, n_hidden)
    bnmean = hprebn.mean(0, keepdim=True)
    bndiff = hprebn - bnmean
    bnvar = bndiff.square().sum(0, keepdim=True) / (n - 1)
    bnvar_inv = torch.rsqrt(bnvar + BN_EPS)
    bnraw = bndiff * bnvar_inv
    hpreact = bngain * bnraw + bnbias
    h = torch.tanh(hpreact)                         # (n, n_hidden)
    logits = h @ W2 + b2                            # (n, vocab_size)
    loss = F.cross_entropy(logits, Yb)
    cache = dict(emb=emb, embcat=embcat, hprebn=hprebn, bnmean=bnmean, bndiff=bndiff, bnvar=bnvar,
                 bnvar_inv=bnvar_inv, bnraw=bnraw, hpreact=hpreact, h=h, logits=logits)
    return loss, cache
