# numpy transcription of TRL GRPOTrainer._compute_loss (grpo_trainer.py @ f2cd577), vectorised as the torch code.
import json, sys
import numpy as np
cases = json.load(open(sys.argv[1] if len(sys.argv) > 1 else '/tmp/grpo-xcheck.json'))

def loss_fn(c, logp, logp_det):
    o = c['opts']
    mask = np.array(c['mask'], float)
    adv = np.array(c['adv'], float)[:, None]
    old = np.array(c['old'], float) if c['old'] is not None else logp_det
    eps_low = o['epsilonLow']
    eps_high = o.get('epsilonHigh', eps_low) if o.get('epsilonHigh') is not None else eps_low
    q = o.get('topEntropyQuantile', 1.0)
    if q < 1.0:
        ent = np.array(c['entropy'], float)
        local = ent[mask.astype(bool)]
        if local.size == 0:
            emask = np.zeros_like(ent, bool)
        else:
            thr = np.quantile(local, 1 - q)
            emask = ((ent * mask) >= thr) & mask.astype(bool)
    else:
        emask = None
    def log_w(lp):
        lr = lp - old
        if o['importanceSamplingLevel'] == 'token':
            return lr
        return ((lr * mask).sum(-1) / np.clip(mask.sum(-1), 1.0, None))[:, None]
    coef_1 = np.exp(log_w(logp))
    if o['beta'] != 0.0:
        ref = np.array(c['ref'], float)
        per_token_kl = np.exp(ref - logp) - (ref - logp) - 1
    if o['lossType'] == 'cispo':
        clamped = np.minimum(np.exp(log_w(logp_det)), eps_high)  # .detach()
        per_token_loss = -clamped * adv * logp
    else:
        coef_2 = np.clip(coef_1, 1 - eps_low, 1 + eps_high)
        if o.get('delta') is not None:
            coef_1 = np.minimum(coef_1, o['delta'])
        per_token_loss = -np.minimum(coef_1 * adv, coef_2 * adv)
    if emask is not None:
        per_token_loss = per_token_loss * emask
    if c['isr'] is not None:
        per_token_loss = per_token_loss * np.array(c['isr'], float)
    if o['beta'] != 0.0:
        per_token_loss = per_token_loss + o['beta'] * per_token_kl
    per_token_loss = per_token_loss * np.ones_like(mask)
    lt = o['lossType']
    if lt == 'grpo':
        return ((per_token_loss * mask).sum(-1) / np.clip(mask.sum(-1), 1.0, None)).mean()
    if lt == 'bnpo':
        return (per_token_loss * mask).sum() / max(mask.sum(), 1.0)
    if lt == 'dr_grpo':
        return (per_token_loss * mask).sum() / (per_token_loss.shape[0] * o['maxCompletionLength'])
    n = o.get('numItemsInBatch')
    n = mask.sum() if n is None else n
    return (per_token_loss * mask).sum() / max(n, 1.0)

worst_l = worst_g = 0.0
for c in cases:
    lp = np.array(c['logp'], float)
    L = loss_fn(c, lp, lp)
    worst_l = max(worst_l, abs(L - c['loss']) / max(1, abs(L)))
    g = np.zeros_like(lp); h = 1e-6
    for i in range(lp.shape[0]):
        for j in range(lp.shape[1]):
            p = lp.copy(); p[i, j] += h; m = lp.copy(); m[i, j] -= h
            g[i, j] = (loss_fn(c, p, lp) - loss_fn(c, m, lp)) / (2 * h)
    gt = np.array(c['grad'], float)
    worst_g = max(worst_g, float(np.max(np.abs(g - gt) / (1e-3 + np.abs(g)))))
print(f"{len(cases)} cases; worst relative loss error {worst_l:.2e}; worst gradient error |fd-tf|/(1e-3+|fd|) {worst_g:.2e}")
