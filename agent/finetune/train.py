"""Fine-tune a small causal LM on leave-one-out tagging prompts (LoRA or full), on CPU or GPU.

Design choices, each measured or forced by a 2-core CPU (docs/finetune.md):

- the loss covers the answer tokens only (``{"tags":["C"]}`` + end of turn; for the
  attribute task the whole JSON answer + end of turn), and the
  language-model head runs only at those positions: SmolLM2's head is a 49k × 576 matrix,
  ~20% of the forward cost if applied to every prompt token;
- LoRA may be restricted to the last ``lora_layers`` transformer layers: the backward pass
  then stops there, so a step costs about one forward plus a fraction of a backward;
- batches are drawn from a permutation seeded by ``seed + epoch`` and grouped by length
  inside windows of 16 batches (less padding, same order on every run); dropout is off, so
  a run is a deterministic function of the seed, and a resumed run equals an uninterrupted one;
- every ``checkpoint_every`` optimiser steps the trainable weights, the optimiser state
  and the position in the data are written atomically; a restart with the same arguments
  resumes from the latest checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from agent.finetune.attributes import AttributeTrainItem
from agent.finetune.data import TrainItem
from agent.llm.base import ChatMessage, option_token_ids
from agent.llm.transformers_backend import chat_prompt, encode_text
from agent.tagger import ANSWER_PREFIX, ANSWER_SUFFIX
from retrieval.durable import atomic_path

Method = Literal["lora", "full"]
DType = Literal["fp32", "bf16"]
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CHECKPOINTS = "checkpoints"
IGNORE = -100
#: a training item of either task
AnyItem = TrainItem | AttributeTrainItem


@dataclass(frozen=True)
class TrainConfig:
    method: Method = "lora"
    epochs: int = 1
    learning_rate: float = 5e-4
    batch_size: int = 8
    grad_accum: int = 1
    warmup_steps: int = 10
    weight_decay: float = 0.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_layers: int | None = None  # LoRA on the last N layers only (None: every layer)
    max_tokens: int = 640  # longer prompts are left out (counted)
    dtype: DType = "fp32"
    seed: int = 0
    checkpoint_every: int = 25
    keep_checkpoints: int = 2
    max_steps: int | None = None  # stop early after this many optimiser steps (a time budget)


@dataclass(frozen=True, slots=True)
class Encoded:
    ids: list[int]
    n_prompt: int  # tokens before the answer's first token
    option_ids: dict[str, list[int]]  # letter -> the single tokens that begin it


@dataclass
class Progress:
    step: int
    total_steps: int
    epoch: int
    loss: float
    tokens_per_s: float


def encode(tokenizer: Any, item: AnyItem) -> Encoded:
    messages = [ChatMessage("system", item.system), ChatMessage("user", item.user)]
    end = tokenizer.eos_token or ""
    if isinstance(item, AttributeTrainItem):
        # the attribute step forces no answer prefix: the whole JSON object is generated
        prompt = encode_text(tokenizer, chat_prompt(tokenizer, messages))
        answer = encode_text(tokenizer, item.answer + end)
        return Encoded(prompt + answer, len(prompt), {})
    prompt = tokenizer(chat_prompt(tokenizer, messages, ANSWER_PREFIX), add_special_tokens=False)["input_ids"]
    answer = tokenizer(item.letter + ANSWER_SUFFIX + end, add_special_tokens=False)["input_ids"]
    tokenize = partial(encode_text, tokenizer)
    options = {letter: option_token_ids(tokenize, letter, [ANSWER_SUFFIX]) for letter in item.letters}
    return Encoded(list(prompt) + list(answer), len(prompt), options)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10%: a function of the step, so resumable."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    span = max(1, total - cfg.warmup_steps)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def epoch_batches(lengths: Sequence[int], cfg: TrainConfig, epoch: int) -> list[list[int]]:
    """Deterministic batches of item positions for one epoch: shuffled, then sorted by
    length inside windows of 16 batches so that a batch pads little."""
    order = list(range(len(lengths)))
    random.Random(cfg.seed * 1_000_003 + epoch).shuffle(order)
    window = cfg.batch_size * 16
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: (lengths[i], i))
        batches.extend(chunk[j : j + cfg.batch_size] for j in range(0, len(chunk), cfg.batch_size))
    random.Random(cfg.seed * 7_919 + epoch).shuffle(batches)
    return batches


class Trainer:
    """Owns the model while it trains; ``run`` trains (resuming) and returns the history."""

    def __init__(
        self,
        base_dir: Path,
        out: Path,
        train: Sequence[AnyItem],
        val: Sequence[AnyItem],
        cfg: TrainConfig,
        *,
        threads: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg, self.out = cfg, out
        self.log = log or (lambda _m: None)
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(cfg.seed)  # LoRA's A matrices are initialised at random
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
        # bf16 + LoRA: the frozen base runs in bf16 (CPUs with AVX-512 BF16/AMX and GPUs do
        # it natively) while peft keeps the adapters and their optimiser state in fp32
        # (autocast_adapter_dtype), so the trained weights lose no precision.
        base_dtype = torch.bfloat16 if cfg.dtype == "bf16" and cfg.method == "lora" else torch.float32
        model: Any = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=base_dtype)
        model.config.use_cache = False
        if cfg.method == "lora":
            from peft import LoraConfig, get_peft_model

            n_layers = int(model.config.num_hidden_layers)
            layers = None
            if cfg.lora_layers is not None and cfg.lora_layers < n_layers:
                layers = list(range(n_layers - cfg.lora_layers, n_layers))
            model = get_peft_model(
                model,
                LoraConfig(
                    r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                    target_modules=list(LORA_TARGETS), layers_to_transform=layers,
                    task_type="CAUSAL_LM",
                ),
            )
        if cfg.dtype == "bf16" and cfg.method == "full":
            model = model.to(torch.bfloat16)
        self.model = model.to(self.device)
        self.trainable = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(
            list(self.trainable.values()), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        self.train = [encode(self.tokenizer, it) for it in train]
        self.val = [(encode(self.tokenizer, it), it) for it in val]
        self.dropped_long = sum(1 for e in self.train if len(e.ids) > cfg.max_tokens)
        self.train = [e for e in self.train if len(e.ids) <= cfg.max_tokens]
        steps_per_epoch = math.ceil(math.ceil(len(self.train) / cfg.batch_size) / cfg.grad_accum)
        self.total_steps = steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)

    # -- the parts of the model a step uses ----------------------------------------------
    def _causal_lm(self) -> Any:
        model = self.model
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def _answer_loss(self, batch: Sequence[Encoded]) -> tuple[Any, int]:
        """Mean cross-entropy over the answer tokens; the LM head runs at those positions only."""
        import torch

        width = max(len(e.ids) for e in batch)
        pad = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        rows: list[int] = []
        cols: list[int] = []
        targets: list[int] = []
        for b, e in enumerate(batch):
            ids[b, : len(e.ids)] = torch.tensor(e.ids)
            mask[b, : len(e.ids)] = 1
            for pos in range(e.n_prompt, len(e.ids)):  # the token at pos is predicted at pos-1
                rows.append(b)
                cols.append(pos - 1)
                targets.append(e.ids[pos])
        lm = self._causal_lm()
        hidden = lm.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).last_hidden_state
        picked = hidden[torch.tensor(rows), torch.tensor(cols)]
        logits = lm.lm_head(picked).float()
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(targets, device=logits.device))
        return loss, int(mask.sum())

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """Accuracy of the model's top letter (what scoring and greedy constrained
        generation both answer) on the held-out items, and of the retrieval vote's top one;
        for attribute items :meth:`validate_answers`."""
        import torch

        if not self.val:
            return {}
        if isinstance(self.val[0][1], AttributeTrainItem):
            return self.validate_answers()
        lm = self._causal_lm()
        self.model.eval()
        correct = 0
        nll = 0.0
        with torch.inference_mode():
            for enc, item in self.val:
                ids = torch.tensor([enc.ids[: enc.n_prompt]], device=self.device)
                hidden = lm.model(input_ids=ids).last_hidden_state[0, -1]
                logp = torch.log_softmax(lm.lm_head(hidden).float(), dim=-1)
                mass = {
                    letter: float(torch.logsumexp(logp[toks], dim=0)) if toks else -math.inf
                    for letter, toks in enc.option_ids.items()
                }
                best = max(mass, key=lambda k: mass[k])
                assert isinstance(item, TrainItem)
                correct += best == item.letter
                nll -= mass[item.letter]
        self.model.train()
        return {"val_accuracy": correct / len(self.val), "val_nll": nll / len(self.val), "val_n": len(self.val)}

    def validate_answers(self) -> dict[str, float]:
        """Teacher-forced on the held-out answers (one forward pass each): the share of
        answer tokens the model ranks first, the share of answers it would write exactly
        (every token first: what greedy decoding writes, unconstrained), and the mean
        negative log-likelihood per answer token."""
        import torch

        lm = self._causal_lm()
        self.model.eval()
        tokens = right = exact = 0
        nll = 0.0
        with torch.inference_mode():
            for enc, _item in self.val:
                ids = torch.tensor([enc.ids], device=self.device)
                hidden = lm.model(input_ids=ids).last_hidden_state[0, enc.n_prompt - 1 : len(enc.ids) - 1]
                logp = torch.log_softmax(lm.lm_head(hidden).float(), dim=-1)
                target = torch.tensor(enc.ids[enc.n_prompt :], device=logp.device)
                hits = int((logp.argmax(dim=-1) == target).sum())
                tokens += len(target)
                right += hits
                exact += hits == len(target)
                nll -= float(logp[torch.arange(len(target)), target].sum())
        self.model.train()
        n = len(self.val)
        return {"val_token_accuracy": right / max(1, tokens), "val_exact": exact / n,
                "val_nll": nll / max(1, tokens), "val_n": n}

    # -- checkpoints -----------------------------------------------------------------------
    def _checkpoint_dir(self) -> Path:
        return self.out / CHECKPOINTS

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self._checkpoint_dir().glob("step-*.pt"))
        return found[-1] if found else None

    def _save_checkpoint(self, step: int, epoch: int, batch_index: int, history: list[dict[str, Any]]) -> None:
        import torch

        directory = self._checkpoint_dir()
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "step": step, "epoch": epoch, "batch_index": batch_index, "history": history,
            "trainable": {n: p.detach().cpu() for n, p in self.trainable.items()},
            "optimizer": self.optimizer.state_dict(),
        }
        path = directory / f"step-{step:07d}.pt"
        with atomic_path(path) as tmp:  # a kill mid-write leaves the previous checkpoint intact
            torch.save(state, tmp)
        for old in sorted(directory.glob("step-*.pt"))[: -self.cfg.keep_checkpoints]:
            old.unlink()
        # the temporary file of a save killed midway (temporary names are unique, so a
        # resumed run never overwrites it); one trainer per run directory
        for stale in directory.glob(".step-*.tmp"):
            stale.unlink(missing_ok=True)

    def _load_checkpoint(self, path: Path) -> tuple[int, int, int, list[dict[str, Any]]]:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        with torch.no_grad():
            for name, value in state["trainable"].items():
                self.trainable[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        return int(state["step"]), int(state["epoch"]), int(state["batch_index"]), list(state["history"])

    # -- the loop --------------------------------------------------------------------------
    def run(self, progress: Callable[[Progress], None] | None = None) -> list[dict[str, Any]]:
        cfg = self.cfg
        step, epoch, batch_index = 0, 0, 0
        history: list[dict[str, Any]] = []
        latest = self.latest_checkpoint()
        if latest is not None:
            step, epoch, batch_index, history = self._load_checkpoint(latest)
            self.log(f"resumed from {latest.name} (step {step}, epoch {epoch + 1}, batch {batch_index})")
        lengths = [len(e.ids) for e in self.train]
        self.model.train()
        window_tokens, window_start = 0, time.perf_counter()
        while epoch < cfg.epochs and step < self.total_steps:
            batches = epoch_batches(lengths, cfg, epoch)
            while batch_index < len(batches) and step < self.total_steps:
                group = batches[batch_index : batch_index + cfg.grad_accum]
                for group_lr in self.optimizer.param_groups:
                    group_lr["lr"] = lr_at(step, self.total_steps, cfg)
                loss_sum = 0.0
                for positions in group:
                    loss, tokens = self._answer_loss([self.train[i] for i in positions])
                    (loss / len(group)).backward()
                    loss_sum += float(loss.detach()) / len(group)
                    window_tokens += tokens
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                step += 1
                batch_index += len(group)
                elapsed = time.perf_counter() - window_start
                if progress is not None:
                    progress(Progress(step, self.total_steps, epoch, loss_sum, window_tokens / max(elapsed, 1e-9)))
                if step % cfg.checkpoint_every == 0:
                    self._save_checkpoint(step, epoch, batch_index, history)
            if batch_index >= len(batches):  # a full epoch: validate, move on
                metrics = {"epoch": epoch + 1, "step": step, **self.validate()}
                history.append(metrics)
                self.log(json.dumps(metrics))
                epoch, batch_index = epoch + 1, 0
                self._save_checkpoint(step, epoch, batch_index, history)
            elif step >= self.total_steps:  # stopped by max_steps inside an epoch
                metrics = {"epoch": epoch + 1, "step": step, "partial": True, **self.validate()}
                history.append(metrics)
                self.log(json.dumps(metrics))
                self._save_checkpoint(step, epoch, batch_index, history)
        return history

    # -- output ----------------------------------------------------------------------------
    def save_model(self, directory: Path) -> None:
        """Merged weights in the Hugging Face layout of the base export (what the
        transformers backend and vLLM load), plus the LoRA adapter alone for vLLM's
        LoRA serving."""
        import torch

        model = self.model
        if hasattr(model, "merge_and_unload"):
            model.save_pretrained(str(directory / "adapter"))
            import copy

            # merge in fp32: a bf16 base would round the adapters' small deltas away
            model = copy.deepcopy(model).to(torch.float32).merge_and_unload()
        model = model.to(torch.float32)
        model.config.use_cache = True
        model.save_pretrained(str(directory), safe_serialization=True)
        self.tokenizer.save_pretrained(str(directory))
        template = self.tokenizer.chat_template
        if template and not (directory / "chat_template.jinja").exists():
            (directory / "chat_template.jinja").write_text(str(template), encoding="utf-8")
        # the savers write some files 0600; a model is meant to be read by a service account
        for path in [*directory.glob("*.*"), *(directory / "adapter").glob("*")]:
            if path.is_file():
                os.chmod(path, 0o644)


def config_json(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)
