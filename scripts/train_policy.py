#!/usr/bin/env python3
"""train_policy.py — learns etx's `learned` policy from `etx eval --trace` results.

The learned policy (docs/policies.md, "learned") is a small network from 13 features of
a decoding step (the entropix signals, the top-4 log-probabilities, the token confidence,
ln(1 + step), "after a pause") to a distribution over a few actions (argmax; a draw at a
temperature; the pause token; entropix's adaptive branch). This script writes its policy
file. Three commands:

  init   a first policy whose network gives every action the same probability (all
         weights zero): the exploration policy that collects the training data.

             python3 scripts/train_policy.py init --actions argmax,sample:0.7,adaptive \\
                 --out explore.json

  train  from result files of `etx eval --task gsm8k --samples N --trace` run with a
         learned policy (each sample's per-token features, actions and the log-probability
         of each action under the policy that ran, plus whether the sample's answer is
         right), fits a new network and writes its policy file:

             python3 scripts/train_policy.py train --results explore.jsonl \\
                 --policy explore.json --out learned.json

         --method pg (default): policy gradient with a baseline, PPO's clipped surrogate.
             Each sample's advantage is its reward (1 right, 0 wrong) minus the mean
             reward of the other samples of its problem (a problem every sample gets right,
             or wrong, teaches nothing and weighs 0). Every token of a sample shares its
             advantage; the ratio pi_new(a|s) / pi_old(a|s) uses the log-probability etx
             recorded (action_logprob), clipped to [1 - eps, 1 + eps] as in PPO, so several
             epochs over the same data stay near the policy that collected it.
         --method bc: behaviour cloning: cross-entropy on the actions of the samples whose
             answer is right (the actions of right answers made more likely).
         Problems are split by id into training and validation sets (--val-frac); the
         script prints both sets' objective at every epoch and writes the network of the
         epoch with the best validation objective.

  check  reads a policy file, prints its actions and, given --results, the action
         frequencies under the network against those recorded (a sanity check that the
         features computed here are the ones etx computes).

Features are computed from the trace columns as etx computes them
(hostdev/policy_learned.h), in float32 where etx uses float (the trace prints each float
with 9 significant digits, which reads back exactly; numpy's sums run in another order,
so the network's log-probabilities agree with etx's to about 1e-6, which `check
--max-diff` verifies); "after a pause" is the trace's own
after_pause column.

Needs numpy only (the network is at most two hidden layers of 64 ReLU units; its
gradients are written out by hand).
"""
import argparse
import json
import math
import sys

import numpy as np

FEATURES = ["entropy", "varentropy", "attn_entropy", "attn_varentropy", "agreement", "interaction",
            "top_logprob_0", "top_logprob_1", "top_logprob_2", "top_logprob_3", "confidence", "log_step",
            "after_pause"]
N_FEAT = len(FEATURES)
MAX_ACTIONS, MAX_HIDDEN, MAX_LAYERS = 8, 64, 2
CLIP = 10.0  # etx clamps each normalised feature to [-CLIP, CLIP] (ETX_LEARNED_CLIP)


def die(msg):
    print(f"train_policy.py: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------------------
# actions and policy files

def parse_actions(spec):
    """'argmax,sample:0.7,sample:1.0:0.95,adaptive,pause' -> the policy file's actions."""
    out = []
    for item in spec.split(","):
        parts = item.strip().split(":")
        kind = parts[0]
        if kind in ("argmax", "adaptive", "pause"):
            if len(parts) != 1:
                die(f"action '{item}': {kind} takes no parameters")
            out.append({"kind": kind})
        elif kind == "sample":
            if not 2 <= len(parts) <= 3:
                die(f"action '{item}': sample:TEMPERATURE[:TOP_P]")
            a = {"kind": "sample", "temperature": float(parts[1])}
            if len(parts) == 3:
                a["top_p"] = float(parts[2])
            out.append(a)
        else:
            die(f"action '{item}': unknown kind (argmax, sample:T[:P], adaptive, pause)")
    if not 2 <= len(out) <= MAX_ACTIONS:
        die(f"{len(out)} actions; 2..{MAX_ACTIONS}")
    return out


def policy_file(net, actions, choose, seed, training=None, base=None):
    """The JSON of a learned policy: base's parameters (the entropix ones the adaptive
    action reads, the seed), the network, and how it was trained."""
    out = {"policy": "learned"}
    for k, v in (base or {}).items():
        if k not in ("policy", "learned", "training", "calibration"):
            out[k] = v
    out["seed"] = seed if seed is not None else out.get("seed", 0)
    layers = [{"weight": W.astype(np.float32).tolist(), "bias": b.astype(np.float32).tolist()}
              for W, b in zip(net["W"], net["b"])]
    out["learned"] = {"features": FEATURES, "mean": [float(np.float32(x)) for x in net["mean"]],
                      "scale": [float(np.float32(x)) for x in net["scale"]], "layers": layers,
                      "actions": actions, "choose": choose}
    if training is not None:
        out["training"] = training
    return out


def read_policy(path):
    with open(path) as f:
        pol = json.load(f)
    if pol.get("policy") != "learned" or "learned" not in pol:
        die(f"{path}: not a learned policy file (\"policy\": \"learned\" with a \"learned\" object)")
    L = pol["learned"]
    if L.get("features") != FEATURES:
        die(f"{path}: its features are not the ones this script computes")
    net = {"mean": np.array(L["mean"], np.float32), "scale": np.array(L["scale"], np.float32),
           "W": [np.array(x["weight"], np.float32).reshape(len(x["weight"]), -1) for x in L["layers"]],
           "b": [np.array(x["bias"], np.float32) for x in L["layers"]]}
    return pol, net


# ---------------------------------------------------------------------------
# the network (float64 for training; etx runs it in float32)

def init_net(n_actions, hidden, rng, mean, scale):
    sizes = [N_FEAT] + list(hidden) + [n_actions]
    W, b = [], []
    for i in range(len(sizes) - 1):
        lim = math.sqrt(6.0 / (sizes[i] + sizes[i + 1]))
        W.append(rng.uniform(-lim, lim, (sizes[i + 1], sizes[i])))
        b.append(np.zeros(sizes[i + 1]))
    W[-1] *= 0.01  # start near the uniform policy
    return {"mean": mean, "scale": scale, "W": W, "b": b}


def normalise(net, X):
    return np.clip((X - net["mean"]) / net["scale"], -CLIP, CLIP)


def forward(net, X):
    """Logits (n, A) and the activations backward() needs."""
    acts = [normalise(net, X)]
    h = acts[0]
    for l in range(len(net["W"])):
        z = h @ net["W"][l].T + net["b"][l]
        h = z if l == len(net["W"]) - 1 else np.maximum(z, 0.0)
        acts.append(h)
    return h, acts


def log_softmax(z, mask):
    z = np.where(mask, z, -np.inf)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def backward(net, acts, dz):
    """Gradients of sum(dz * logits) with respect to W and b."""
    gW, gb = [None] * len(net["W"]), [None] * len(net["W"])
    g = dz
    for l in reversed(range(len(net["W"]))):
        gW[l] = g.T @ acts[l]
        gb[l] = g.sum(axis=0)
        if l > 0:
            g = (g @ net["W"][l]) * (acts[l] > 0)
    return gW, gb


# ---------------------------------------------------------------------------
# data: result lines -> per-token features, actions, old log-probabilities, advantages

def features_of(tr):
    n = len(tr["token"])
    X = np.zeros((n, N_FEAT), np.float32)
    for j, k in enumerate(FEATURES[:6]):
        X[:, j] = np.array([np.nan if v is None else v for v in tr[k]], np.float32)
    tl = np.array([[np.nan if v is None else v for v in row] for row in tr["top_logprobs"]], np.float32)
    X[:, 6:10] = tl.reshape(n, 4)
    X[:, 10] = np.array([np.nan if v is None else v for v in tr["confidence"]], np.float32)
    X[:, 11] = np.log(np.float32(1.0) + np.arange(n, dtype=np.float32))
    if "after_pause" in tr:  # etx's own flag: the previous token is the pause token
        X[:, 12] = np.array(tr["after_pause"], np.float32)
    else:  # an older trace: the previous step's action was a pause (misses a drawn pause token)
        X[:, 12] = [0.0] + [b == "pause" for b in tr["branch"][:-1]]
    return X


def load_results(paths):
    """Per sample: problem id, reward, X, actions, old log-probabilities."""
    samples = []
    for path in paths:
        with open(path) as f:
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError as e:
                    die(f"{path}:{ln}: not a JSON line ({e.msg} at column {e.colno}): a torn or foreign file")
                if not isinstance(r, dict) or "id" not in r:
                    die(f"{path}:{ln}: not a result line of etx eval or etx sweep (no \"id\")")
                if "samples" not in r and "score" not in r:
                    die(f"{path}:{ln}: no score (run etx eval with --task gsm8k and references)")
                group = r.get("samples") or [dict(r, correct=bool(r["score"].get("flexible")))]
                for s in group:
                    tr = s.get("trace")
                    if tr is None:
                        die(f"{path}:{ln}: no \"trace\" (run etx eval with --trace)")
                    if "correct" not in s:
                        die(f"{path}:{ln}: no score (run etx eval with --task gsm8k and references)")
                    if s.get("finish") == "error" or not tr["token"]:
                        continue
                    acts = np.array(tr["action"], np.int64)
                    if (acts < 0).any():
                        die(f"{path}:{ln}: a token without an action: the run's policy was not a learned one")
                    samples.append({"id": json.dumps(r["id"]), "reward": float(bool(s["correct"])),
                                    "X": features_of(tr), "a": acts,
                                    "old": np.array([np.nan if v is None else v for v in tr["action_logprob"]],
                                                    np.float64)})
    if not samples:
        die("no samples with traces in the results")
    return samples


def advantages(samples):
    """Leave-one-out baseline within each problem's samples."""
    by_id = {}
    for s in samples:
        by_id.setdefault(s["id"], []).append(s)
    for group in by_id.values():
        total = sum(s["reward"] for s in group)
        for s in group:
            s["adv"] = s["reward"] - (total - s["reward"]) / (len(group) - 1) if len(group) > 1 else 0.0
    return by_id


def stack(samples, method):
    X = np.concatenate([s["X"] for s in samples]).astype(np.float64)
    a = np.concatenate([s["a"] for s in samples])
    old = np.concatenate([s["old"] for s in samples])
    if method == "pg":
        w = np.concatenate([np.full(len(s["a"]), s["adv"]) for s in samples])
    else:
        w = np.concatenate([np.full(len(s["a"]), s["reward"]) for s in samples])
    ok = np.isfinite(X).all(axis=1) & np.isfinite(old)
    return X[ok], a[ok], old[ok], w[ok], X[ok, 12] > 0.5


# ---------------------------------------------------------------------------
# the objective: mean over tokens (to be maximised)

def objective(net, X, a, old, w, after_pause, pause_cols, method, eps, want_grad):
    z, acts = forward(net, X)
    mask = np.ones_like(z, bool)
    if pause_cols.size:
        mask[np.ix_(after_pause, pause_cols)] = False
    lp = log_softmax(z, mask)
    n = len(a)
    lpa = lp[np.arange(n), a]
    p = np.exp(lp)
    if method == "pg":  # PPO's clipped surrogate: min(r A, clip(r) A)
        ratio = np.exp(lpa - old)
        clipped = np.clip(ratio, 1 - eps, 1 + eps)
        obj = np.minimum(ratio * w, clipped * w)
        value = obj.mean()
        # d obj / d lpa: ratio * w where the unclipped term is the minimum, else 0
        active = (ratio * w) <= (clipped * w)
        g_lpa = np.where(active, ratio * w, 0.0) / n
    else:  # weighted log-likelihood of the actions taken
        value = (w * lpa).sum() / max(w.sum(), 1e-9)
        g_lpa = w / max(w.sum(), 1e-9)
    if not want_grad:
        return value, None
    # d lpa / d z = onehot(a) - p
    dz = -p * g_lpa[:, None]
    dz[np.arange(n), a] += g_lpa
    dz = np.where(mask, dz, 0.0)
    gW, gb = backward(net, acts, -dz)  # gradients of the loss (-objective)
    return value, (gW, gb)


def train(args):
    base, old_net = read_policy(args.policy)
    actions = base["learned"]["actions"]
    pause_cols = np.array([j for j, x in enumerate(actions) if x["kind"] == "pause"], np.int64)
    samples = load_results(args.results)
    by_id = advantages(samples)
    ids = sorted(by_id)
    rng = np.random.default_rng(args.seed)
    rng.shuffle(ids)
    n_val = int(round(len(ids) * args.val_frac))
    val_ids = set(ids[:n_val])
    tr_s = [s for s in samples if s["id"] not in val_ids]
    va_s = [s for s in samples if s["id"] in val_ids]
    Xt, at, ot, wt, pt = stack(tr_s, args.method)
    if len(at) == 0:
        die("no training tokens")
    have_val = len(va_s) > 0
    if have_val:
        Xv, av, ov, wv, pv = stack(va_s, args.method)
    informative = sum(1 for g in by_id.values() if 0 < sum(s["reward"] for s in g) < len(g))
    print(f"{len(samples)} samples of {len(ids)} problems ({informative} with both right and wrong samples); "
          f"{len(at)} training tokens, {len(av) if have_val else 0} validation tokens "
          f"({n_val} problems held out)")
    freq = np.bincount(at, minlength=len(actions)) / len(at)
    print("actions taken: " + ", ".join(f"{json.dumps(x)} {f:.3f}" for x, f in zip(actions, freq)))
    if args.method == "pg":
        for j, x in enumerate(actions):  # the raw signal: mean advantage of the tokens that took each action
            sel = at == j
            print(f"  mean advantage after {x['kind']}{':' + str(x.get('temperature')) if 'temperature' in x else ''}:"
                  f" {wt[sel].mean() if sel.any() else float('nan'):+.4f} over {sel.sum()} tokens")
    mean = Xt.mean(axis=0)
    scale = Xt.std(axis=0)
    scale = np.where(scale > 1e-3, scale, 1.0)
    mean[12], scale[12] = 0.0, 1.0  # a 0/1 flag stays one
    hidden = [args.hidden] * args.layers
    net = init_net(len(actions), hidden, rng, mean, scale)
    # Adam
    m = [np.zeros_like(x) for x in net["W"] + net["b"]]
    v = [np.zeros_like(x) for x in net["W"] + net["b"]]
    t = 0
    best = (-np.inf, None, -1)
    for epoch in range(args.epochs):
        order = rng.permutation(len(at))
        for i in range(0, len(order), args.batch):
            sel = order[i:i + args.batch]
            _, (gW, gb) = objective(net, Xt[sel], at[sel], ot[sel], wt[sel], pt[sel], pause_cols, args.method,
                                    args.eps, True)
            grads = gW + gb
            params = net["W"] + net["b"]
            t += 1
            for k, (p_, g_) in enumerate(zip(params, grads)):
                g_ = g_ + args.l2 * p_
                m[k] = 0.9 * m[k] + 0.1 * g_
                v[k] = 0.999 * v[k] + 0.001 * g_ * g_
                p_ -= args.lr * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8)
        tr_obj, _ = objective(net, Xt, at, ot, wt, pt, pause_cols, args.method, args.eps, False)
        va_obj = objective(net, Xv, av, ov, wv, pv, pause_cols, args.method, args.eps, False)[0] if have_val \
            else tr_obj
        z, _ = forward(net, Xt)
        mask = np.ones_like(z, bool)
        if pause_cols.size:
            mask[np.ix_(pt, pause_cols)] = False
        probs = np.exp(log_softmax(z, mask)).mean(axis=0)
        print(f"epoch {epoch + 1}: objective train {tr_obj:+.5f} validation {va_obj:+.5f}; "
              f"mean action probabilities " + " ".join(f"{p:.3f}" for p in probs))
        if va_obj > best[0]:
            best = (va_obj, {"mean": net["mean"].copy(), "scale": net["scale"].copy(),
                             "W": [x.copy() for x in net["W"]], "b": [x.copy() for x in net["b"]]}, epoch + 1)
    if best[1] is None:
        die("training produced no finite objective")
    # the objective of the policy that collected the data, for comparison
    z0 = objective(old_net, Xv if have_val else Xt, av if have_val else at, ov if have_val else ot,
                   wv if have_val else wt, pv if have_val else pt, pause_cols, args.method, args.eps, False)[0]
    print(f"kept epoch {best[2]}: validation objective {best[0]:+.5f} (the collecting policy's: {z0:+.5f})")
    training = {"method": args.method, "results": args.results, "collecting_policy": args.policy,
                "samples": len(samples), "problems": len(ids), "validation_problems": n_val,
                "informative_problems": informative, "tokens": int(len(at)), "epochs": args.epochs,
                "kept_epoch": best[2], "validation_objective": best[0], "collecting_validation_objective": z0,
                "hidden": hidden, "lr": args.lr, "eps": args.eps, "l2": args.l2, "seed": args.seed}
    out = policy_file(best[1], actions, args.choose, None, training, base)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")


def cmd_init(args):
    actions = parse_actions(args.actions)
    net = {"mean": np.zeros(N_FEAT), "scale": np.ones(N_FEAT),
           "W": [np.zeros((len(actions), N_FEAT))], "b": [np.zeros(len(actions))]}
    how = "init (uniform over the actions)"
    if args.random > 0:  # state-dependent probabilities (tests: the features matter)
        rng = np.random.default_rng(args.seed)
        net["W"] = [rng.normal(0.0, args.random, (len(actions), N_FEAT))]
        net["b"] = [rng.normal(0.0, args.random, len(actions))]
        net["scale"] = np.full(N_FEAT, 4.0)
        how = f"init (random weights, N(0, {args.random}))"
    out = policy_file(net, actions, "sample", args.seed, {"method": how})
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: {len(actions)} actions, " +
          ("random weights" if args.random > 0 else f"each with probability 1/{len(actions)}"))


def cmd_check(args):
    pol, net = read_policy(args.policy)
    actions = pol["learned"]["actions"]
    print(f"{args.policy}: {len(actions)} actions {json.dumps(actions)}, layers "
          f"{[w.shape for w in net['W']]}, choose {pol['learned'].get('choose', 'sample')}")
    if not args.results:
        return
    samples = load_results(args.results)
    X = np.concatenate([s["X"] for s in samples]).astype(np.float64)
    a = np.concatenate([s["a"] for s in samples])
    old = np.concatenate([s["old"] for s in samples])
    ok = np.isfinite(X).all(axis=1)
    pause_cols = np.array([j for j, x in enumerate(actions) if x["kind"] == "pause"], np.int64)
    z, _ = forward(net, X[ok])
    mask = np.ones_like(z, bool)
    if pause_cols.size:
        mask[np.ix_(X[ok, 12] > 0.5, pause_cols)] = False
    lp = log_softmax(z, mask)
    lpa = lp[np.arange(ok.sum()), a[ok]]
    diff = np.abs(lpa - old[ok])
    print(f"{ok.sum()} tokens: |log p(action) here - etx's| max {diff.max():.3g}, mean {diff.mean():.3g}")
    print("actions taken: " + " ".join(f"{c}" for c in np.bincount(a[ok], minlength=len(actions))))
    if args.max_diff is not None and diff.max() > args.max_diff:
        die(f"the recomputed action log-probabilities differ from etx's by {diff.max():.3g} > {args.max_diff}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init", help="a uniform first policy (all weights zero)")
    p.add_argument("--actions", default="argmax,sample:0.7,adaptive",
                   help="comma-separated: argmax, sample:T[:TOP_P], adaptive, pause (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random", type=float, default=0.0,
                   help="random weights of this standard deviation instead of zeros (default 0: uniform)")
    p.add_argument("--out", required=True)
    p = sub.add_parser("train", help="fit a network to etx eval --trace results")
    p.add_argument("--results", nargs="+", required=True, help="etx eval --trace --task gsm8k result files")
    p.add_argument("--policy", required=True, help="the learned policy file the results were run with")
    p.add_argument("--out", required=True)
    p.add_argument("--method", choices=["pg", "bc"], default="pg")
    p.add_argument("--hidden", type=int, default=32, help="units per hidden layer (1..64, default 32)")
    p.add_argument("--layers", type=int, default=1, help="hidden layers (0..2, default 1)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--l2", type=float, default=1e-4)
    p.add_argument("--eps", type=float, default=0.2, help="PPO clip (default 0.2)")
    p.add_argument("--val-frac", type=float, default=0.25, help="problems held out for validation")
    p.add_argument("--choose", choices=["sample", "argmax"], default="sample",
                   help="how etx picks the action: drawn from the network's distribution (default) or its mode")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("check", help="describe a policy file; with --results, compare log-probabilities")
    p.add_argument("--policy", required=True)
    p.add_argument("--results", nargs="*")
    p.add_argument("--max-diff", type=float, default=None)
    args = ap.parse_args()
    if args.cmd == "init":
        cmd_init(args)
    elif args.cmd == "train":
        if not 1 <= args.hidden <= MAX_HIDDEN or not 0 <= args.layers <= MAX_LAYERS:
            die(f"--hidden 1..{MAX_HIDDEN}, --layers 0..{MAX_LAYERS}")
        if not 0 <= args.val_frac < 1:
            die("--val-frac in [0, 1)")
        train(args)
    else:
        cmd_check(args)


if __name__ == "__main__":
    main()
