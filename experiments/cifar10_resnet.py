"""Does ghost batch norm's statistics batch matter for ResNet-18 on CIFAR-10?
Scientific: model.virtual_batch_size (playbook: "computing statistics over ~64 examples works
better"). Nuisance: the learning rate and momentum of SGD with Nesterov momentum, and weight
decay; linear decay with warmup; bf16 compute on float32 master weights; random crops and flips.

CIFAR-10 comes from tensorflow-datasets, prepared beforehand (jaxplay downloads nothing):
  pip install -e '.[tfds]' && tfds build cifar10 --file_format=array_record
  python -m jaxplay.sweep --config experiments/cifar10_resnet.py --workdir runs/cifar10_resnet
About 20 minutes per trial on one H100. Without tfds, `:synthetic` trains on generated images of
CIFAR's shape (a pipeline check, not a result); `:smoke` is the tiny version the tests run.
"""

import ml_collections

from jaxplay import spaces


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(
        name="tfds",
        tfds_name="cifar10",
        train_split="train[:45000]",
        val_split="train[45000:]",
        test_split="test",
        batch_size=256,
        pipeline="grain",
        prefetch=2,
        read_threads=16,
        augment="crop_flip",
    )
    c.model = dict(
        name="resnet",
        stage_sizes=(2, 2, 2, 2),
        width=64,
        block="basic",
        stem="cifar",
        virtual_batch_size=64,
        activation="relu",
        dropout=0.0,
    )
    c.optimizer = dict(
        name="sgd", learning_rate=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    c.schedule = dict(name="linear", warmup_steps=500)
    c.train = dict(
        steps=35_000,
        eval_every=1000,
        keep_best=3,
        grad_clip_norm=0.0,
        label_smoothing=0.1,
        eval_batch_size=1024,
        compute_dtype="bfloat16",
    )
    c.study = dict(
        name="cifar10-resnet18-ghost-bn",
        notes="virtual batch size vs tuned SGD",
        objective="val/error",
        mode="min",
        algorithm="quasirandom",
        num_trials=24,
        seed=0,
    )
    c.search = dict(
        model=dict(virtual_batch_size=spaces.discrete([32, 64, 256], role="scientific")),
        optimizer=dict(
            learning_rate=spaces.log(0.02, 2.0, role="nuisance"),
            momentum=spaces.linear(0.8, 0.99, role="nuisance"),
            weight_decay=spaces.log(1e-5, 1e-3, role="nuisance"),
        ),
    )
    if arg in ("synthetic", "smoke"):
        c.data = dict(
            name="synthetic_images",
            image_size=32,
            num_classes=10,
            num_train=4096,
            num_val=1024,
            batch_size=256,
            pipeline="grain",
            augment="crop_flip",
        )
        c.study.name = "cifar10-resnet18-synthetic"
        c.train.steps, c.train.eval_every, c.schedule.warmup_steps = 1000, 100, 50
    if arg == "smoke":
        c.data.update(num_train=128, num_val=40, batch_size=16)  # CIFAR's real 32x32x3
        c.model.update(stage_sizes=(1, 1), width=8, virtual_batch_size=8)
        c.search.model.virtual_batch_size = spaces.discrete([8], role="scientific")
        c.train.update(steps=4, eval_every=2, eval_batch_size=32)
        c.schedule.warmup_steps = 1
        c.study.update(name="cifar10-resnet-smoke", num_trials=2)
    elif arg not in (None, "synthetic"):
        raise ValueError(f"unknown config argument {arg!r}; use ':synthetic', ':smoke' or nothing")
    return c
