"""Fine-tuning the small LLM on the customer's already-tagged products (issue #9).

- :mod:`agent.finetune.data`: leave-one-out training prompts, built by the agent's own
  prompt code over the real candidate generator;
- :mod:`agent.finetune.attributes`: the same for the attribute step (``--task attributes``):
  its exact prompt, leave-one-out neighbours, a cross-fitted extractor, the gold values as
  the JSON answer;
- :mod:`agent.finetune.train`: LoRA / full fine-tuning with checkpoints and resume;
- :mod:`agent.finetune.run`: one run end to end, writing a model directory with a manifest;
- :mod:`agent.finetune.blend`: the model's weight in the blend with the retrieval vote,
  fitted on held-out products.

torch, transformers and peft are imported only inside the functions that train.
"""

from agent.finetune.attributes import (
    AttributeDatasetStats,
    AttributeTrainItem,
    build_attribute_items,
)
from agent.finetune.blend import fit_blend
from agent.finetune.data import DatasetStats, TrainItem, build_items, exclusion_sets
from agent.finetune.run import (
    FINETUNE_PROFILE,
    FinetuneJob,
    RunMismatchError,
    finetune,
    fit_model_blend,
)
from agent.finetune.train import Progress, TrainConfig

__all__ = [
    "FINETUNE_PROFILE",
    "AttributeDatasetStats",
    "AttributeTrainItem",
    "DatasetStats",
    "FinetuneJob",
    "Progress",
    "RunMismatchError",
    "TrainConfig",
    "TrainItem",
    "build_attribute_items",
    "build_items",
    "exclusion_sets",
    "finetune",
    "fit_blend",
    "fit_model_blend",
]
