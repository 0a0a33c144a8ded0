"""The training step the compare job lowers to GEMMs: which network, in which state, on what.

* ``digits_cnn`` (the default job): trained on scikit-learn's bundled 8×8 digits for ``--steps``
  (default 300) steps; the step captured is the last training batch.
* CIFAR-shaped models (``resnet18``, ``vgg16_bn``, ``densenet121``, ``wrn16_8``, input 3×32×32):
  trained for ``--steps`` (default :data:`CIFAR_STEPS`) steps of batch
  ``max(--batch, TRAIN_BATCH)`` (:data:`TRAIN_BATCH` = 16: at batch 4 ResNet-18 reached 38.1 %
  test accuracy in 150 steps, at 16 97.5 %), the step captured on the first ``--batch`` items
  of the last training batch, on CIFAR-10
  when ``--data-dir`` (or ``$SWAT_DATA``) holds it, otherwise on the bundled digits resized to
  32×32 (bilinear) and repeated over the three channels. So the weights, activations and
  gradients are those of a network that has learned, not of its initialisation: ResNet-18 at
  SWAT-U 90 %, batch 16, reaches 97.5 % test accuracy on the resized digits after the default
  150 steps (about 1.3 epochs, ~2 min on this 2-core machine); after 20 steps it was still at
  chance (10 %), so its step was that of an untrained network.
* ``resnet50`` (ImageNet shapes, 3×224×224, 1000 classes): not trained (an ImageNet run is out of
  reach of this machine). Initial weights (PyTorch's Kaiming-uniform defaults) and a synthetic
  batch: inputs i.i.d. N(0, 1) (the statistics of normalised images, not their structure),
  uniformly random labels. The Top-K densities, and therefore the S operands' non-zero counts
  and the speedups over the same core on the dense operands, are set by the sparsity; what the
  synthetic data changes are the natural zeros (ReLU) of the dense baselines and the spread of
  the non-zeros over columns, hence load balance.

Every model is SWAT-ified with ``--method``, ``--distribution``, ``--period`` and
``--structured`` before the step.
"""

from __future__ import annotations

import time

__all__ = ["CIFAR_STEPS", "DEFAULT_BATCH", "TRAIN_BATCH", "capture"]

#: Training steps of a CIFAR-shaped model before its step is captured (``--steps`` default).
CIFAR_STEPS = 150
#: Smallest training batch of a CIFAR-shaped model: a smaller ``--batch`` is the captured
#: step's only (the network it captures has learned as at the default batch)
TRAIN_BATCH = 16
#: ``--batch`` default per input size: digits trains at the dataset default (64).
DEFAULT_BATCH = {(1, 8, 8): None, (3, 32, 32): 16, (3, 224, 224): 32}


def _swat_kwargs(args, sparsity):
    return dict(method=args.method, distribution=args.distribution, sparsity=sparsity,
                period=args.period,
                structured=False if args.structured == "none" else args.structured)


def _digits_resized(shape):
    """The bundled digits as ``shape`` ([C, H, W]) images: bilinear resize, channels repeated."""
    import torch.nn.functional as F

    from sw import data as swdata

    d = swdata.load_digits()
    c, h, w = shape

    def up(x):
        return F.interpolate(x, size=(h, w), mode="bilinear",
                             align_corners=False).repeat(1, c, 1, 1).contiguous()

    return swdata.Dataset(name=f"digits{h}", train_x=up(d.train_x), train_y=d.train_y,
                          test_x=up(d.test_x), test_y=d.test_y, num_classes=10)


def _train_and_capture(args, name, sparsity, steps, batch, data, dataset, log, on_layer,
                       train_batch=None):
    """Train ``steps`` steps at ``train_batch`` (default ``batch``), capture the step on the
    first ``batch`` items of the last training batch."""
    import torch

    from sw import train as swtrain

    train_batch = train_batch or batch
    captured = {}

    def cb(info):
        captured["inputs"] = info.inputs.detach().clone()
        captured["targets"] = info.targets.detach().clone()

    t0 = time.monotonic()
    res = swtrain.train(dataset=dataset, model=name, max_steps=steps, batch_size=train_batch,
                        seed=args.seed, plots=False, callback=cb, data=data,
                        data_dir=args.data_dir, **_swat_kwargs(args, sparsity))
    acc = res.final.get("test_acc", res.final.get("test_accuracy"))
    log(f"trained {name} on {data.name if data is not None else dataset} ({args.method}, "
        f"{args.distribution}, sparsity {sparsity:.2f}) for {res.steps} steps in "
        f"{time.monotonic() - t0:.1f} s at batch {train_batch}"
        + (f", test accuracy {acc:.1%}" if acc is not None else ""))
    torch.manual_seed(args.seed)
    x, y = captured["inputs"], captured["targets"]
    if batch is not None and batch < x.shape[0]:
        x, y = x[:batch].contiguous(), y[:batch].contiguous()
    recs = swtrain.capture_step(res.model, x, y, on_layer=_bind(on_layer, res.model))
    shape = tuple(x.shape)
    info = {"model": name, "steps": res.steps, "batch": shape[0],
            "train_batch": int(captured["inputs"].shape[0]),
            "data": data.name if data is not None else dataset,
            "final": {k: v for k, v in res.final.items() if isinstance(v, int | float)}}
    return res.model, recs, shape, info


def _bind(on_layer, model):
    return None if on_layer is None else (lambda name, rec: on_layer(model, name, rec))


def _synthetic_step(args, name, sparsity, batch, log, on_layer):
    import torch

    from sw import models, swatify
    from sw import train as swtrain

    torch.manual_seed(args.seed)
    model = models.build(name, num_classes=1000)
    swatify(model, **_swat_kwargs(args, sparsity))
    shape = (batch, *models.input_shape(name))
    x = torch.randn(shape)
    y = torch.randint(0, 1000, (batch,))
    t0 = time.monotonic()
    recs = swtrain.capture_step(model, x, y, on_layer=_bind(on_layer, model))
    log(f"{name}: initial weights, one step on a synthetic N(0, 1) batch of {batch} "
        f"{shape[2]}x{shape[3]} inputs ({time.monotonic() - t0:.1f} s)")
    return model, recs, shape, {"model": name, "steps": 0, "batch": batch,
                                "data": "synthetic N(0,1), random labels"}


def capture(args, sparsity: float, log, on_layer=None):
    """``(model, records, input shape, info)`` of the step the job lowers (module docstring).

    ``on_layer(model, name, record)``: stream the step layer by layer instead of returning the
    records (``sw.train.capture_step``'s ``on_layer``; ``records`` then holds the loss only)."""
    from sw import models

    name = models._canonical(args.model)
    shape = models.input_shape(name)
    batch = args.batch or DEFAULT_BATCH.get(shape)
    if name == "digits_cnn":
        return _train_and_capture(args, name, sparsity, args.steps or 300, batch, None,
                                  "digits", log, on_layer)
    if shape == (3, 32, 32):
        from sw import data as swdata

        try:
            swdata.load_cifar("cifar10", args.data_dir)
        except FileNotFoundError:
            data, dataset = _digits_resized(shape), "digits"
        else:
            data, dataset = None, "cifar10"
        return _train_and_capture(args, name, sparsity, args.steps or CIFAR_STEPS, batch, data,
                                  dataset, log, on_layer, train_batch=max(batch, TRAIN_BATCH))
    return _synthetic_step(args, name, sparsity, batch or 32, log, on_layer)
