"""What each exercise asks for: its notebook, answer cells, graded gradients, points and the
inputs on which answers are replayed (the notebook's own batch and hidden ones)."""
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from . import data, network

EX1_STAGES = {  # answer cell id -> the gradients it defines, in the lecture's order
    "ex1_loss_chain": ["logprobs", "probs", "counts_sum_inv", "counts_sum", "counts",
                       "norm_logits", "logit_maxes", "logits"],
    "ex1_second_layer": ["h", "W2", "b2", "hpreact"],
    "ex1_batchnorm": ["bngain", "bnbias", "bnraw", "bnvar_inv", "bnvar", "bndiff2", "bndiff",
                      "bnmeani", "hprebn"],
    "ex1_first_layer": ["embcat", "W1", "b1", "emb", "C"],
}


@dataclass
class Exercise:
    """One exercise, defined here only: scoring, checks, replay, the report and the notebook
    builders read these fields and never branch on an exercise's name."""
    key: str
    notebook: str             # file name in source/backprop_ninja/
    answer_cells: dict        # grade id of each answer cell, in order -> the gradients it defines
    grads: dict               # gradient name -> points
    n_hidden: int = 64
    extra_tests: dict = field(default_factory=dict)  # test name -> points (not one gradient)
    # "steps": the answer cells assign the gradients (d + name), replayed statement by statement;
    # "function": the answer cell defines backward(Xb, Yb, parameters, cache), which returns the
    # parameters' gradients (in `grads`' order), judged step by step inside its body
    kind: str = "steps"
    # steps: each gradient the answer assigns is replaced by autograd's for the statements after
    # it, so that every step is judged on its true upstream
    true_upstream: bool = False
    # steps judged again with every upstream random (their true gradient is zero up to
    # rounding, so a constant would pass): step -> its upstream
    random_upstream: dict = field(default_factory=dict)
    # names handed to the answer beside the forward pass's tensors: name -> the gradient (of
    # autograd) it holds
    given: dict = field(default_factory=dict)
    bessel: str = ""          # the gradient whose missing (or extra) Bessel's correction is named
    named_mistakes: bool = False  # the lecture's usual slips named by their answer (score._known_mistakes)
    # the exercise's forward pass, the unit of the cost rule (score.forward_cost): the forward
    # tensors it computes (empty: all of the network's) and its matrix products (a, b: a @ b)
    forward: tuple = ()
    products: tuple = ()
    # a run of the answers costing more than this many forward passes is numerical (the cost
    # rule, grader/detect.py): far above every honest style measured (explicit Jacobians
    # included), far below an evaluation of the forward pass per perturbed element
    cost_bound: float = 100

    def test_id(self, name):
        """The grade id of the graded test cell for a gradient or an extra test."""
        return f"test_{self.key}_d{name}" if name in self.grads else f"test_{self.key}_{name}"


NETWORK_PRODUCTS = (("embcat", "W1"), ("h", "W2"))

EXERCISES = {
    "ex1": Exercise("ex1", "ex1_atomic_graph.ipynb", EX1_STAGES,
                    {k: 1 for k in network.GRAD_NAMES}, true_upstream=True,
                    random_upstream={"logit_maxes": "norm_logits", "b1": "hprebn"}, named_mistakes=True,
                    products=NETWORK_PRODUCTS),
    "ex2": Exercise("ex2", "ex2_cross_entropy.ipynb", {"ex2_dlogits": ["logits"]}, {"logits": 4},
                    forward=("logit_maxes", "norm_logits", "counts", "counts_sum", "counts_sum_inv", "probs",
                             "logprobs"), cost_bound=1000),
    "ex3": Exercise("ex3", "ex3_batchnorm.ipynb", {"ex3_dhprebn": ["hprebn"]}, {"hprebn": 4},
                    given={"dhpreact": "hpreact"}, bessel="hprebn",
                    forward=("bnmeani", "bndiff", "bndiff2", "bnvar", "bnvar_inv", "bnraw", "hpreact"),
                    cost_bound=1000),
    "ex4": Exercise("ex4", "ex4_training.ipynb", {"ex4_backward": []},
                    {k: 1 for k in network.PARAM_NAMES}, n_hidden=200,
                    extra_tests={"training": 3}, kind="function", products=NETWORK_PRODUCTS),
}

# Inputs answers are replayed on: (name, parameter seed, batch seed, batch size). The first is
# the notebook's own batch (parameters and batch from one generator, as in the lecture); the
# hidden ones use other seeds and batch sizes, so `1/32` written for `1/n` is caught. These
# public ones are for practice (tests, a learner's own run of the instructor's tests): a
# course grades on hidden cases drawn from its own secret (see `course_cases`).
CASES = [("notebook", network.SEED, None, 32), ("hidden_a", 1337, 7, 48), ("hidden_b", 4242, 99, 19)]
SECRET_FILE = "backprop_ninja_secret.json"  # beside nbgrader_config.py; never released or committed


@dataclass(frozen=True)
class Setting:
    """The inputs of one grading: the cases, and the seeds of Exercise 4's short training run
    (its initial parameters and its batches)."""
    cases: tuple = tuple(CASES)
    train_param_seed: int = 1337
    train_batch_seed: int = 31337


PRACTICE = Setting()


def course_setting(root):
    """The course's grading setting, drawn from the secret in `root`/backprop_ninja_secret.json
    (created once, with a random secret, when missing). Learners cannot know its cases, so no
    answer can be precomputed for them; keep the file to grade again the same way."""
    import json
    import os
    import random
    import secrets
    path = Path(root) / SECRET_FILE
    if not path.exists():
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"secret": secrets.randbits(62),
                                   "note": "hidden grading cases of Becoming a backprop ninja: keep private"}) + "\n")
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # atomic, and never replaces a secret another process made first
        except FileExistsError:
            pass
        tmp.unlink()
    try:
        secret = int(json.loads(path.read_text())["secret"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a grading secret ({type(e).__name__}): delete it to make a new one") from None
    rng = random.Random(secret)
    sizes = rng.sample([n for n in range(17, 65) if n != 32], 2)
    hidden = tuple((f"hidden_{c}", rng.randrange(2**31), rng.randrange(2**31), n) for c, n in zip("ab", sizes))
    return Setting((CASES[0], *hidden), rng.randrange(2**31), rng.randrange(2**31))


@lru_cache(maxsize=1)
def training_set():
    (Xtr, Ytr), _, _ = data.splits()
    return Xtr, Ytr


def case_inputs(case, n_hidden=64):
    """(params, Xb, Yb) for one case; the notebook case continues the parameters' generator."""
    import torch

    from . import model
    _, pseed, bseed, n = case
    g = torch.Generator().manual_seed(pseed)
    params = model.init_params(n_hidden, g)
    if bseed is not None:
        g = torch.Generator().manual_seed(bseed)
    Xb, Yb = model.sample_batch(*training_set(), n, g)
    return params, Xb, Yb


TRAIN_STEPS = 100   # Exercise 4: steps of the short run compared with an autograd-trained twin
TRAIN_SEED = 31337


def training_params(setting=PRACTICE, n_hidden=200):
    """Exercise 4's short run starts here."""
    import torch

    from . import model
    g = torch.Generator().manual_seed(setting.train_param_seed)
    return list(model.init_params(n_hidden, g).values())


def training_batches(steps=TRAIN_STEPS, batch_size=32, seed=TRAIN_SEED):
    import torch

    from . import model
    g = torch.Generator().manual_seed(seed)
    Xtr, Ytr = training_set()
    return [model.sample_batch(Xtr, Ytr, batch_size, g) for _ in range(steps)]


def sgd_run(grad_fn, params, batches, lr=0.1):
    """Train a copy of params with plain SGD, gradients from grad_fn(params, Xb, Yb)."""
    params = [p.clone() for p in params]
    for Xb, Yb in batches:
        grads = grad_fn(params, Xb, Yb)
        if grads is None or any(g is None or g.numel() != p.numel() for g, p in zip(grads, params)):
            return None
        for p, g in zip(params, grads):
            p -= lr * g.reshape(p.shape)
    return params
