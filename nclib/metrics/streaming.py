"""The exact two-pass streaming measurement
(:func:`measure_features`, :func:`measure`) and its result :class:`NCMetrics`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .. import _validate as _v
from ..features import FeatureTap
from ._core import (
    _PRECISIONS,
    _ROUTES,
    _check_batch,
    _check_choice,
    _check_classifier,
    _num_classes,
    _require_tensor,
)
from .stats import (
    _U32,
    _U64,
    FeatureStats,
    _CertifiedArgmax,
    _certify,
    _screen_ok,
    cdnv,
    collapse_metrics,
    nc1,
    trace_ratio,
)


@dataclass
class NCMetrics:
    """The result of :func:`measure`: every NC metric under a stable name, plus the stats.

    ``metrics`` is a plain dict (``nc1``, ``trace_ratio``, ``equinorm_means``,
    ``equinorm_classifier``, ``equiangularity``, ``max_angle``, ``etf_error``, ``self_duality``,
    ``self_duality_zhu``, ``ncc_mismatch``, ``cdnv``, ``accuracy``, ``n``, and the many-class
    variants when K > D+1); ``stats`` is the first-pass :class:`FeatureStats`.
    """

    metrics: dict
    stats: FeatureStats = field(repr=False)

    def __getitem__(self, key):
        return self.metrics[key]

    def to_dict(self) -> dict:
        return dict(self.metrics)


def _batches_from_tensors(features: Tensor, labels: Tensor, batch_size: int):
    for s in range(0, features.shape[0], batch_size):
        yield features[s : s + batch_size], labels[s : s + batch_size]


def _orthonormal_span(Mc: Tensor, rtol: float = 1e-12) -> Tensor:
    """D×r orthonormal basis of the row space of the K×D matrix Mc (SVD, tolerance rtol·s_max)."""
    _, s, Vh = torch.linalg.svd(Mc, full_matrices=False)
    r = int((s > rtol * s.max()).sum()) if s.numel() and s.max() > 0 else 0
    return Vh[:r].T


# On the CPU both passes work on row chunks of about this many float64 values (1 MiB) in reused
# buffers, so that a chunk's conversion, deviations and products stay in the L2 cache and no
# fresh pages are faulted in per batch; other devices take each batch whole.
_CPU_CHUNK_ELEMS = 1 << 17


def _chunk_rows(dim: int, device: torch.device) -> int | None:
    if device.type != "cpu":
        return None
    return max(64, min(1024, _CPU_CHUNK_ELEMS // max(dim, 1)))


def _row_chunks(x: Tensor, y: Tensor, rows: int | None, extra: Tensor | None = None):
    if rows is None or x.shape[0] <= rows:
        yield x, y, extra
        return
    for s in range(0, x.shape[0], rows):
        yield x[s : s + rows], y[s : s + rows], None if extra is None else extra[s : s + rows]


def _allreduce_sum(*tensors: Tensor) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for t in tensors:
            dist.all_reduce(t)


def _two_pass(
    batches: Callable[[], Iterable[tuple[Tensor, Tensor]]],
    K: int,
    W,
    b,
    *,
    global_mean: str,
    unbiased: bool,
    route: str,
    device,
    precision: str = "float64",
) -> NCMetrics:
    r"""Two streaming passes over ``batches()``, all arithmetic in float64.

    Pass 1: class counts and sums, hence the class means (the sums are taken about a common
    shift, the mean of the first rows, so a large common offset costs no precision). Pass 2, with
    the final means: the per-class sums of squared deviations :math:`\lVert h-\mu_y\rVert^2` (the
    two-pass variance: deviations from the exact means, no cancellation), the within-class
    scatter — projected on the span of the centred means when D > K (the K×K route, exact because
    Σ_B⁺ lives in that span), full D×D otherwise — and NC4. On the projected route the nearest
    class centre is also found in the span: :math:`\lVert h-\mu_k\rVert^2` and
    :math:`\lVert Q^\top(h-\mu_k)\rVert^2` differ by a term that does not depend on k (every
    :math:`\mu_k-\mu_j` lies in the span), so the argmin is the same. The network's logits are
    computed from the features themselves, as in :func:`ncc_mismatch`.

    NC4's decisions (the network's argmax; on the D×D route also the nearest centre) are screened
    in float32 and certified, so they equal float64's (:class:`_CertifiedArgmax`).

    ``precision="float32"`` does pass 2's per-sample arithmetic (deviations, projections, their
    products) in float32 and accumulates the per-chunk results in float64; pass 1 (the means),
    NC4 (certified, as above, with the nearest centre in the full space) and everything after
    the passes stay float64. An approximation (relative error ≲ 2⁻²⁴·√D·‖h‖/‖h−μ_y‖ on Σ_W's
    entries; ≤ 1e-5 on the benchmark cases), for GPUs whose float64 is slow.

    On the CPU each batch is processed in cache-sized row chunks (see ``_CPU_CHUNK_ELEMS``).
    Finiteness is checked on the accumulated float64 sums (a NaN or inf feature makes them
    non-finite) instead of on every feature.
    """
    f64 = torch.float64
    stats = None
    for item in batches():
        x, y = item[0], item[1]
        if stats is None:
            if x.ndim != 2:
                raise ValueError(f"features must be 2-D (N×D), got shape {tuple(x.shape)}")
            stats = FeatureStats(K, x.shape[1], scatter=False, device=device)
            dev, D = stats.device, stats.dim
            rows = _chunk_rows(D, dev)
            buf = torch.empty(rows, D, dtype=f64, device=dev) if rows else None
            counts = torch.zeros(K, dtype=f64, device=dev)
            sums = torch.zeros(K, D, dtype=f64, device=dev)
            shift = None
        x, y = _check_batch(x, y, K, D, finite=False)
        x = x.detach().to(device=dev)
        y = y.detach().to(device=dev, dtype=torch.long)
        if x.shape[0] == 0:
            continue
        if shift is None:
            shift = x[:rows].to(f64).mean(0)
        counts += torch.bincount(y, minlength=K)
        for xc, yc, _ in _row_chunks(x, y, rows):
            z = buf[: xc.shape[0]].copy_(xc) if buf is not None else xc.to(f64, copy=True)
            sums.index_add_(0, yc, z.sub_(shift))
    if stats is None:
        raise ValueError("no data: the loader produced no batches")
    if not bool(torch.isfinite(sums).all()):
        raise ValueError("features contain NaN or inf (or values whose float64 sums overflow)")
    if shift is not None:
        nonempty = (counts > 0)[:, None]
        stats.means = torch.where(nonempty, shift + sums / counts.clamp_min(1.0)[:, None], torch.zeros_like(sums))
    stats.counts = counts
    stats.sync()  # counts and means over all ranks (sq_dev comes from pass 2)
    means, counts = stats.means, stats.counts
    if W is not None:
        W, b = _check_classifier(W, K, D, b)
        W = W.detach().to(device=dev, dtype=f64)
        b = None if b is None else b.detach().to(device=dev, dtype=f64)
        Wt = W.T.contiguous()
    if route == "auto":
        route = "kk" if D > K else "dd"
    # the means-only metrics now: they validate the statistics (empty classes, identical means)
    # before the second pass; the two that need sq_dev are recomputed after it
    out = collapse_metrics(stats, W, b, global_mean=global_mean, unbiased=unbiased, _cdnv=False)
    ref = stats.global_mean(global_mean)
    kk = route == "kk"
    if kk:
        Q = _orthonormal_span(means - means.mean(0))
        r = Q.shape[1]
        Mq = (means - ref) @ Q  # the centred means in the span (K×r)
        MqT, mq2 = Mq.T.contiguous(), (Mq * Mq).sum(1)
    else:
        r = D
    f32 = precision == "float32"
    wd = torch.float32 if f32 else f64  # the working dtype of pass 2's per-sample arithmetic
    scatter = torch.zeros(r, r, dtype=f64, device=dev)
    sq_dev = torch.zeros(K, dtype=f64, device=dev)
    mism = torch.zeros((), dtype=f64, device=dev)
    correct = torch.zeros((), dtype=f64, device=dev)
    dbuf = torch.empty(rows, D, dtype=wd, device=dev) if rows else None
    means_w = means.to(wd)
    if kk:
        Q_w, Mq_w = Q.to(wd), Mq.to(wd)
    screen = W is not None and _screen_ok(dev)
    # the nearest centre in the full space on the D×D route (certified, one float32 product with
    # the logits), in the span otherwise (float64; in float32 precision certified there)
    ncc_full = W is not None and (not kk or (f32 and not screen))
    if W is not None:
        m2 = (means * means).sum(1)
        MT = means.T.contiguous()
        if screen:
            net_dec = _CertifiedArgmax(W, b)
            ncc_dec = _CertifiedArgmax(2.0 * means, -m2) if ncc_full else None
            both = _CertifiedArgmax.stack(net_dec, ncc_dec) if ncc_full else None
            if kk and f32:  # the nearest centre in the span from float32 projections, certified
                mqn = Mq.norm(dim=1)
                mqmax = float(mqn.max())
                mun_w = means.norm(dim=1).to(wd)
                mqn_w = mqn.to(wd)
                MqT2_w = (2.0 * Mq).T.to(wd).contiguous()
                nmq2_w = (-mq2).to(wd)
                uu = _U32 + _U64
                g_d, g_r = 1.1 * D * uu, 1.1 * (r + 4) * uu
        sbuf = torch.empty(rows, K, dtype=f64, device=dev) if rows else None

    def net_exact(h64):
        return (torch.addmm(b, h64, Wt) if b is not None else h64 @ Wt).argmax(1)

    def ncc_exact(h64):  # the float64 nearest centre, as _ncc_predict: ‖μ_k‖² − 2 h·μ_k
        if sbuf is not None and h64.shape[0] <= sbuf.shape[0]:
            S = torch.mm(h64, MT, out=sbuf[: h64.shape[0]])
        else:
            S = h64 @ MT
        return S.mul_(-2.0).add_(m2).argmin(1)

    for item in batches():
        x, y = _check_batch(item[0], item[1], K, D, finite=False)
        x = x.detach().to(device=dev)
        y = y.detach().to(device=dev, dtype=torch.long)
        # a third element: the network's decisions already made (TrainingTracker: the argmax of
        # the training logits), used for NC4 instead of recomputing the logits
        given = item[2].to(device=dev, dtype=torch.long) if len(item) > 2 else None
        for xc, yc, gc in _row_chunks(x, y, rows, given):
            n = xc.shape[0]
            # same-dtype operands: mixed-dtype elementwise ops are several times slower
            h = xc if xc.dtype == wd else (buf[:n].copy_(xc) if (buf is not None and not f32) else xc.to(wd))
            d = torch.index_select(means_w, 0, yc, out=dbuf[:n]) if dbuf is not None else means_w.index_select(0, yc)
            d.sub_(h)  # μ_y − h (the sign cancels below)
            dn = torch.linalg.vector_norm(d, dim=1)
            sq_dev.index_add_(0, yc, dn.square().to(f64))
            if kk:
                p = d @ Q_w  # Qᵀ(μ_y − h)
                if f32:
                    scatter.add_((p.T @ p).to(f64))
                else:
                    scatter.addmm_(p.T, p)
            elif f32:
                scatter.add_((d.T @ d).to(f64))
            else:
                scatter.addmm_(d.T, d)
            if W is not None:
                h64 = lambda rws: (
                    (h if h.dtype == f64 else xc.to(f64))
                    if rws is None
                    else (h[rws] if h.dtype == f64 else xc[rws].to(f64))
                )
                if screen:
                    h32 = h if h.dtype == torch.float32 else xc.to(torch.float32)
                    hn = torch.linalg.vector_norm(h32, dim=1)
                if gc is not None:
                    pred = gc
                    if ncc_full and screen:
                        ncc = ncc_dec(h32, hn, lambda rws: ncc_exact(h64(rws)))
                elif screen and ncc_full:
                    pred, ncc = both(h32, hn, (lambda rws: net_exact(h64(rws)), lambda rws: ncc_exact(h64(rws))))
                elif screen:
                    pred = net_dec(h32, hn, lambda rws: net_exact(h64(rws)))
                else:
                    pred = net_exact(h64(None))
                if ncc_full and not screen:
                    ncc = ncc_exact(h64(None))
                elif ncc_full:
                    pass
                elif f32:
                    # scores 2u·Mq_k − ‖Mq_k‖² from u = Qᵀ(h − μ_G) in float32; the bound E on their
                    # error: ‖δu‖ ≤ (√r(γ_D + u) + 2u)‖μ_y − h‖ + u(‖μ_y‖ + ‖Mq_y‖ + ‖u‖), each score
                    # off by ≤ 2‖δu‖ max‖Mq‖ + (γ_r + 4u)(2‖u‖ max‖Mq‖ + max‖Mq‖²); safety 1.5
                    u = Mq_w.index_select(0, yc).sub_(p)
                    un = torch.linalg.vector_norm(u, dim=1)
                    du = (math.sqrt(r) * (g_d + uu) + 2 * uu) * dn + uu * (mun_w[yc] + mqn_w[yc] + un)
                    E = 1.5 * (2.0 * mqmax * du + g_r * (2.0 * mqmax * un + mqmax * mqmax))
                    ncc = _certify(torch.addmm(nmq2_w, u, MqT2_w), 2.0 * E, lambda rws: ncc_exact(h64(rws)))
                else:
                    u = Mq.index_select(0, yc).sub_(p)  # Qᵀ(h − μ_G)
                    ncc = torch.addmm(mq2, u, MqT, alpha=-2.0).argmin(1)  # ‖Mq_k‖² − 2 u·Mq_k
                mism += (pred != ncc).sum()
                correct += (pred == yc).sum()
    _allreduce_sum(sq_dev, scatter, mism, correct)
    if not (bool(torch.isfinite(sq_dev).all()) and bool(torch.isfinite(scatter).all())):
        raise ValueError("features contain NaN or inf")
    stats.sq_dev = sq_dev
    out["trace_ratio"] = trace_ratio(stats, global_mean=global_mean)
    out["cdnv"] = cdnv(stats)
    if r == 0:
        out["nc1"] = math.inf
    else:
        # the inner statistics live in the mean span (or are the full ones); the same global-mean
        # convention applies there because the projection is affine with the same weights.
        inner = FeatureStats(K, r, scatter=True, device=dev)
        inner.counts, inner.means, inner.scatter = counts, (Mq if kk else means), scatter
        out["nc1"] = nc1(inner, global_mean=global_mean, route="dd")
    N = counts.sum()
    if W is not None:
        out["ncc_mismatch"] = float(mism / N)
        out["accuracy"] = float(correct / N)
    out["n"] = int(N.item())
    return NCMetrics(out, stats)


def measure_features(
    features: Tensor,
    labels: Tensor,
    W: Tensor | None = None,
    b: Tensor | None = None,
    *,
    num_classes: int | None = None,
    batch_size: int = 8192,
    global_mean: str = "samples",
    unbiased: bool = True,
    route: str = "auto",
    precision: str = "float64",
) -> NCMetrics:
    """All NC metrics for features already in memory (streamed in batches of ``batch_size``).

    The same two-pass computation as :func:`measure`; ``num_classes`` defaults to max label + 1
    (the maximum over all ranks under ``torch.distributed``). ``precision="float32"`` is the
    optional faster approximation of :func:`_two_pass` (float64, the default, is exact).
    """
    features = _require_tensor(features, "features")
    labels = _require_tensor(labels, "labels")
    if num_classes is not None:
        num_classes = _num_classes(num_classes)
    _check_choice(route, "route", _ROUTES)
    _check_choice(precision, "precision", _PRECISIONS)
    _v.integer(batch_size, "batch_size", lo=1)
    if num_classes is None:
        if labels.numel() == 0:
            raise ValueError("no data: labels are empty")
        num_classes = int(labels.max()) + 1
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            # every rank must use the same K, also when its shard lacks the top labels
            top = torch.tensor([num_classes], dtype=torch.long, device=features.device)
            dist.all_reduce(top, op=dist.ReduceOp.MAX)
            num_classes = int(top.item())
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    if features.ndim != 2 or labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(f"features must be N×D with N labels: got {tuple(features.shape)} and {tuple(labels.shape)}")
    return _two_pass(
        lambda: _batches_from_tensors(features, labels, batch_size),
        num_classes,
        W,
        b,
        global_mean=global_mean,
        unbiased=unbiased,
        route=route,
        device=features.device,
        precision=precision,
    )


# measure() keeps the first pass's features for the second pass up to this many bytes
_MEASURE_CACHE_BYTES = 256 * 2**20


def _find_module(model: torch.nn.Module, layer) -> torch.nn.Module:
    if isinstance(layer, torch.nn.Module):
        return layer
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(
            f"layer {layer!r}: model has no module named {layer!r}; available: {sorted(k for k in modules if k)[:20]}"
        )
    return modules[layer]


def _classifier_of(model, classifier):
    """(W, b) from an explicit classifier (Linear, tensor, or (W, b)) or from ``model.classifier``/``model.fc``."""
    if classifier is None:
        for name in ("classifier", "fc", "head"):
            mod = getattr(model, name, None)
            if isinstance(mod, torch.nn.Linear):
                classifier = mod
                break
            if mod is not None and hasattr(mod, "weight"):
                classifier = mod
                break
    if classifier is None or classifier is False:
        return None, None
    if isinstance(classifier, Tensor):
        return classifier, None
    if isinstance(classifier, (tuple, list)) and len(classifier) == 2:
        return classifier[0], classifier[1]
    W = getattr(classifier, "weight", None)
    if W is None:
        raise TypeError("classifier must be a Linear-like module, a K×D tensor or a (W, b) pair")
    return W, getattr(classifier, "bias", None)


@torch.no_grad()
def measure(
    model: torch.nn.Module,
    loader,
    *,
    num_classes: int,
    layer=None,
    classifier=None,
    device=None,
    global_mean: str = "samples",
    unbiased: bool = True,
    route: str = "auto",
    precision: str = "float64",
) -> NCMetrics:
    """Measure neural collapse of ``model`` on the data of ``loader`` (two streaming passes).

    Features are taken from ``model.features(x)`` when the model has that method and ``layer``
    is None; otherwise from the *input* of the module named ``layer`` (e.g. ``"fc"`` of a
    torchvision ResNet, i.e. the pooled penultimate features) or its output when
    ``layer=("name", "output")`` — ``layer="name"`` means ``where="input"`` of
    :class:`nclib.features.FeatureTap` (the shared tap, run through the model's forward) — so
    collapse can be measured at any layer.
    Features are flattened per sample. The classifier (W, b) comes from ``classifier`` or from
    the model's ``classifier``/``fc`` Linear; pass ``classifier=False`` to skip NC3/NC4.
    Under ``torch.distributed`` each rank streams its shard and the statistics are all-reduced.
    The model is put in eval mode for the measurement and restored afterwards.

    The model runs over the data once when the features fit in ``_MEASURE_CACHE_BYTES`` (256 MiB):
    the second pass replays the first pass's features (the same numbers, one forward pass saved);
    larger feature sets are streamed through the model twice. ``precision``: as
    :func:`measure_features` (``"float64"``, exact, the default; ``"float32"``, approximate).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    num_classes = _num_classes(num_classes)
    _check_choice(route, "route", _ROUTES)
    _check_choice(precision, "precision", _PRECISIONS)
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    W, b = _classifier_of(model, classifier)
    where = "input"
    if isinstance(layer, tuple):
        layer, where = layer
        _check_choice(where, "layer position", ("input", "output"))
    name = None
    if layer is not None or not hasattr(model, "features") or not callable(model.features):
        name = layer if layer is not None else ("fc" if hasattr(model, "fc") else "classifier")
        target = _find_module(model, name)  # a name or a submodule, checked with a message listing the modules
        name = next(n for n, m in model.named_modules() if m is target)
    # nclib.features' shared tap: model.features(x), or the `where` of module `name` in a forward pass
    tap = FeatureTap(model, name, where=where if name is not None else None, through="forward")

    replay = {"batches": [], "bytes": 0, "complete": False}  # the first pass's features, for the second

    def batches():
        if replay["complete"]:
            yield from replay["batches"]
            return
        first = replay["batches"] is not None and not replay["batches"]
        for i, batch in enumerate(loader):
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                what = (
                    f"a {type(batch).__name__} of {len(batch)} items"
                    if isinstance(batch, (tuple, list))
                    else f"a {type(batch).__name__}"
                )
                raise ValueError(f"loader must yield (inputs, labels) pairs; batch {i} is {what}")
            xb, yb = batch
            xb = xb.to(device)
            feats = tap(xb).flatten(1)
            if first and replay["batches"] is not None:
                replay["bytes"] += feats.numel() * feats.element_size()
                if replay["bytes"] > _MEASURE_CACHE_BYTES:
                    replay["batches"] = None  # too large: stream the model again in pass 2
                else:
                    replay["batches"].append((feats, yb))
            yield feats, yb
        replay["complete"] = first and replay["batches"] is not None

    with tap:
        return _two_pass(
            batches,
            num_classes,
            W,
            b,
            global_mean=global_mean,
            unbiased=unbiased,
            route=route,
            device=device,
            precision=precision,
        )
