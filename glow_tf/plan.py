"""The plan of a training run: batch sizes, epoch length and schedule, from the flags and the data.

As the original: ``n_batch_train`` and ``n_batch_init`` are per replica at the ``anchor_size``
resolution, so a replica trains on ``local_batch_train = n_batch_train * anchor_size**2 //
image_size**2`` images per step; an epoch is ``train_its = ceil(n_train / (n_batch_train *
n_replicas))`` steps whatever the resolution, and the original's ``n_processed`` counts images
at the anchor resolution. Epochs count from 1: step s (0-based) is in epoch ``s // train_its + 1``.
"""
import dataclasses
import math

from glow_tf import data, optim


@dataclasses.dataclass(frozen=True)
class Plan:
    """The original's derived hps: batch sizes, epoch length, beta2 (all logged in the hps line).

    Attributes:
      n_replicas: replicas in sync.
      image_size: resolved image size.
      n_batch_train: --n_batch_train, per replica at the anchor resolution.
      local_batch_train, local_batch_test, local_batch_init: per-replica batches at image_size.
      global_batch_train: images per training step over all replicas.
      n_train, n_test, n_y: epoch size, test images, classes (from the data).
      train_its: steps per epoch, ceil(n_train / (n_batch_train * n_replicas)).
      beta2: 1 - 1 / (train_its * polyak_epochs).
    """
    n_replicas: int
    image_size: int
    n_batch_train: int
    local_batch_train: int
    local_batch_test: int
    local_batch_init: int
    global_batch_train: int
    n_train: int
    n_test: int
    n_y: int
    train_its: int
    beta2: float

    def n_processed(self, step):
        """Images seen at the anchor resolution before ``step`` (the original's n_processed)."""
        return step * self.n_batch_train * self.n_replicas

    def n_images(self, step):
        """Images actually seen before ``step`` (the original's n_images)."""
        return step * self.global_batch_train

    def epoch_of(self, step) -> int:
        """The epoch (from 1) that step ``step`` (from 0) is in."""
        return step // self.train_its + 1

    def steps_to_epoch_end(self, step) -> int:
        """Steps from ``step`` to the end of its epoch, ``step`` included."""
        return self.train_its - step % self.train_its

    def epochs_begun(self, steps_done) -> int:
        """The epochs that ``steps_done`` steps reached into (at least 1)."""
        return max(1, -(-steps_done // self.train_its))


def _anchor_batch(config, batch, image_size, name):
    local = batch * config.anchor_size ** 2 // image_size ** 2
    if local < 1:
        raise ValueError(f"--{name}: expected {name} * anchor_size**2 // image_size**2 >= 1, got "
                         f"{batch} * {config.anchor_size}**2 // {image_size}**2 = {local}")
    return local


def make_data(config, n_replicas=1):
    """(data.Datasets, Plan) for a ``TrainConfig`` and the replica count."""
    image_size = config.data.resolved_image_size
    local_train = _anchor_batch(config, config.n_batch_train, image_size, "n_batch_train")
    local_init = _anchor_batch(config, config.n_batch_init, image_size, "n_batch_init")
    local_test = config.local_batch_test(local_train)
    datasets = data.make_datasets(config.data.replace(global_batch_train=local_train * n_replicas,
                                                      global_batch_test=local_test * n_replicas,
                                                      init_batch=local_init))
    info = datasets.info
    train_its = int(math.ceil(info.n_train / (config.n_batch_train * n_replicas)))
    plan = Plan(n_replicas=n_replicas, image_size=info.image_size, n_batch_train=config.n_batch_train,
                local_batch_train=local_train, local_batch_test=local_test, local_batch_init=local_init,
                global_batch_train=local_train * n_replicas, n_train=info.n_train, n_test=info.n_test,
                n_y=info.n_y, train_its=train_its, beta2=optim.polyak_decay(train_its, config.polyak_epochs))
    return datasets, plan


def should_test(epoch, config):
    """The original runs a test pass when epoch % epochs_full_valid == 0."""
    return epoch % config.epochs_full_valid == 0


def should_sample(epoch, config):
    """The original's sample schedule (inside its test-or-not condition)."""
    visible = epoch < 10 or (epoch < 50 and epoch % 10 == 0) or epoch % config.epochs_full_valid == 0
    return visible and (epoch in (1, 10) or epoch % config.epochs_full_sample == 0)
