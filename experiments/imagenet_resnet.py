"""ResNet-50 on ImageNet: which learning rate and warmup does batch size 1024 need?
Scientific: schedule.warmup_steps. Nuisance: SGD-Nesterov learning rate and weight decay.
Ghost batch norm over 64 examples, bf16 compute, label smoothing 0.1 (the standard recipe's
shape; AlgoPerf's ImageNet ResNet workload uses the same model).

ImageNet comes from tensorflow-datasets, prepared beforehand in array_record format (jaxplay
downloads nothing); the grain pipeline decodes and center-crops on host threads:
  pip install -e '.[tfds]'   # and prepare imagenet2012 in $TFDS_DATA_DIR
  python -m jaxplay.sweep --config experiments/imagenet_resnet.py --workdir runs/imagenet_resnet
Days of accelerator time for the whole study. `:smoke` is the tiny version the tests run on
generated images of ImageNet's 224x224x3 shape.
"""

import ml_collections

from jaxplay import spaces


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(
        name="tfds",
        tfds_name="imagenet2012",
        train_split="train",
        val_split="validation",
        image_size=224,
        batch_size=1024,
        pipeline="grain",
        prefetch=2,
        read_threads=32,
        augment="flip",
    )
    c.model = dict(
        name="resnet",
        stage_sizes=(3, 4, 6, 3),
        width=64,
        block="bottleneck",
        stem="imagenet",
        virtual_batch_size=64,
        activation="relu",
        dropout=0.0,
    )
    c.optimizer = dict(
        name="sgd", learning_rate=0.4, momentum=0.9, nesterov=True, weight_decay=5e-5
    )
    c.schedule = dict(name="cosine", warmup_steps=5 * 1251)
    c.train = dict(
        steps=90 * 1251,
        eval_every=1251,
        keep_best=3,
        grad_clip_norm=0.0,
        label_smoothing=0.1,
        eval_batch_size=2048,
        compute_dtype="bfloat16",
        train_eval_examples=10_000,
    )
    c.study = dict(
        name="imagenet-resnet50-warmup",
        notes="warmup length at batch 1024",
        objective="val/error",
        mode="min",
        algorithm="quasirandom",
        num_trials=16,
        seed=0,
    )
    c.search = dict(
        schedule=dict(
            warmup_steps=spaces.discrete([1251, 3 * 1251, 5 * 1251, 10 * 1251], role="scientific")
        ),
        optimizer=dict(
            learning_rate=spaces.log(0.1, 4.0, role="nuisance"),
            weight_decay=spaces.log(1e-5, 3e-4, role="nuisance"),
        ),
    )
    if arg == "smoke":
        c.data = dict(
            name="synthetic_images",
            image_size=224,
            num_classes=10,
            num_train=64,
            num_val=24,
            batch_size=16,
            pipeline="grain",
            augment="flip",
        )
        c.model.update(stage_sizes=(1, 1), width=8, virtual_batch_size=8)
        c.train.update(steps=4, eval_every=2, eval_batch_size=32)
        c.schedule.warmup_steps = 1
        c.search.schedule.warmup_steps = spaces.discrete([1, 2], role="scientific")
        c.study.update(name="imagenet-resnet-smoke", num_trials=2)
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
    return c
