"""Training batches whose order is a pure function of (seed, step), so a resumed run sees the same data.

The sample stream is fixed by the seed: epoch ``e`` visits the dataset in the order
``randperm(n, seed=(seed, e))`` and global micro-batch ``b`` holds stream positions
``[b * B, (b + 1) * B)``. Each process takes its contiguous share of every global micro-batch, so
two processes see the two halves of the batch one process would see. Random transforms draw from a
generator seeded by the sample's stream position, never from the global RNG, so they too repeat
exactly after a resume, whatever the number of workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from zoo.data import collate, load_dataset, parse_spec
from zoo.errors import ZooError
from zoo.train.schema import DataSpec

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads (seed, position) over the generator's seed space


def _seed_for(seed: int, position: int) -> int:
    return (seed * _MIX + position) % (2**63 - 1)


def build_dataset(spec: str | dict, split: str) -> Dataset:
    """The dataset a spec names, on ``split`` unless the spec chooses its own split."""
    _, options = parse_spec(spec)
    return load_dataset(spec) if "split" in options else load_dataset(spec, split=split)


class StepSampler:
    """Yields this process's share of each global micro-batch as ``(position, index)`` pairs.

    Args:
        size: number of items in the dataset.
        batch_size: global micro-batch size (all processes together).
        start_batch: first global micro-batch to yield (a resumed run starts where it stopped).
        stop_batch: stop before this micro-batch; ``None`` runs forever.
        shuffle: reshuffle every epoch (training) or visit items in order (validation).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        start_batch: int = 0,
        stop_batch: int | None = None,
        shuffle: bool = True,
    ):
        if size < 1:
            raise ZooError("the training dataset is empty")
        if batch_size % world:
            raise ZooError(f"batch_size {batch_size} must be divisible by the number of processes ({world})")
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.share = batch_size // world
        self.rank, self.start_batch, self.stop_batch = rank, start_batch, stop_batch
        self._epoch, self._order = -1, torch.arange(size)

    def index(self, position: int) -> int:
        """The dataset index at a stream position."""
        epoch, offset = divmod(position, self.size)
        if not self.shuffle:
            return offset
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(_seed_for(self.seed, epoch))
            self._epoch, self._order = epoch, torch.randperm(self.size, generator=generator)
        return int(self._order[offset])

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in itertools.count(self.start_batch):
            if self.stop_batch is not None and batch >= self.stop_batch:
                return
            first = batch * self.batch_size + self.rank * self.share
            yield [(p, self.index(p)) for p in range(first, first + self.share)]


class Augmented(Dataset):
    """A dataset read by ``(position, index)``, with the recipe's random transforms seeded by position."""

    def __init__(self, dataset: Dataset, spec: DataSpec, seed: int):
        self.dataset, self.spec, self.seed = dataset, spec, seed
        self.sample_rate = getattr(dataset, "sample_rate", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        position, index = key
        return self.transform(self.dataset[index], position)

    def transform(self, item: Any, position: int) -> dict:
        if not isinstance(item, dict):
            raise ZooError(f"dataset items must be dicts (image/audio/text keys), got {type(item).__name__}")
        item = dict(item)
        generator = torch.Generator().manual_seed(_seed_for(self.seed, position))
        if "image" in item:
            item["image"] = self._image(item["image"], generator)
        if "audio" in item and self.spec.audio_seconds is not None:
            item["audio"] = self._audio(item["audio"], generator)
        return item

    def _image(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:  # [3, H, W]
        if self.spec.crop is not None:
            size, (height, width) = self.spec.crop, image.shape[-2:]
            if height < size or width < size:
                raise ZooError(f"data.crop={size} is larger than a {height}x{width} image")
            top = int(torch.randint(height - size + 1, (1,), generator=generator))
            left = int(torch.randint(width - size + 1, (1,), generator=generator))
            image = image[..., top : top + size, left : left + size]
        if self.spec.flip and bool(torch.rand((), generator=generator) < 0.5):
            image = image.flip(-1)
        return image

    def _audio(self, audio: torch.Tensor, generator: torch.Generator) -> torch.Tensor:  # [T]
        if self.sample_rate is None:
            raise ZooError("data.audio_seconds needs a dataset with a sample_rate attribute")
        length = round(self.spec.audio_seconds * self.sample_rate)
        if audio.shape[-1] <= length:
            return audio
        start = int(torch.randint(audio.shape[-1] - length + 1, (1,), generator=generator))
        return audio[..., start : start + length]


class _Stream(IterableDataset):
    """Batches from a streaming dataset: the stream cycles, this process takes its share of each batch."""

    def __init__(self, data: Augmented, sampler: StepSampler):
        self.data, self.sampler = data, sampler

    def __iter__(self):
        def cycle():
            while True:
                empty = True
                for item in self.data.dataset:
                    empty = False
                    yield item
                if empty:
                    raise ZooError("the training dataset is empty")

        items = cycle()
        sampler, skip = self.sampler, self.sampler.start_batch * self.sampler.batch_size
        for _ in range(skip):  # resuming a stream means reading past what was already seen
            next(items)
        for batch in itertools.count(sampler.start_batch):
            if sampler.stop_batch is not None and batch >= sampler.stop_batch:
                return
            rows = [next(items) for _ in range(sampler.batch_size)]
            first = sampler.rank * sampler.share
            share = rows[first : first + sampler.share]
            yield collate(
                [self.data.transform(item, batch * sampler.batch_size + first + i) for i, item in enumerate(share)]
            )


def batches(
    dataset: Dataset,
    spec: DataSpec,
    batch_size: int,
    seed: int,
    rank: int,
    world: int,
    start_batch: int = 0,
    stop_batch: int | None = None,
    shuffle: bool = True,
) -> DataLoader:
    """A loader of this process's micro-batches, starting at global micro-batch ``start_batch``."""
    data = Augmented(dataset, spec, seed)
    # The loader's own generator only seeds worker processes; passing one keeps it from drawing on the
    # global RNG, whose state belongs to the model and is restored exactly on resume.
    generator = torch.Generator().manual_seed(_seed_for(seed, start_batch))
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        sampler = StepSampler(1, batch_size, seed, rank, world, start_batch, stop_batch, shuffle=False)
        return DataLoader(_Stream(data, sampler), batch_size=None, num_workers=0)
    sampler = StepSampler(len(dataset), batch_size, seed, rank, world, start_batch, stop_batch, shuffle)
    return DataLoader(
        data, batch_sampler=sampler, collate_fn=collate, num_workers=spec.num_workers, generator=generator
    )


def texts_of(dataset: Dataset) -> Iterator[str]:
    """The ``text`` of every item, in order, for tokenizers trained by ``fit(texts)``."""
    items = dataset if not hasattr(dataset, "__len__") else (dataset[i] for i in range(len(dataset)))
    for item in items:
        if not isinstance(item, dict) or "text" not in item:
            raise ZooError("fitting a text tokenizer needs a text dataset (items with a 'text' key)")
        yield item["text"]
