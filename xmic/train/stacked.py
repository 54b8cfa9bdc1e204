"""Several seeds of one method trained together as one stacked model (``torch.func``).

Inputs: the members' ``TrainConfig``s (identical but for ``seed``), the training bank and class
input w, and per member the model ``train`` would build for its seed. Outputs:
``StackedRuns``: every parameter stacked along a leading member axis [S, ...], one AdamW and
one warm-up schedule over the stacked tensors (AdamW is element-wise, so this is S optimisers
in one), and per member its own sampling generator, seeded as a separate run seeds it.
``epoch`` trains one pass: at each step every member draws its own batch exactly as
``loop.train_epoch`` would ([S, B, T, D] gathered from the one bank in memory), the members'
forwards run as one ``vmap`` of ``functional_call`` and the summed loss gives each member its
own gradient. ``member(s)`` is member s's model and ``optimizer_state(s)`` its AdamW state (for
evaluation and checkpoints; ``xmic.train.stacked_runs`` writes the run folders). Results equal
separate runs up to float rounding (tests/test_stacked.py: weights within 1e-5 after 2 epochs
on the CPU, the same selected epochs). Methods with a frozen text tower in the forward (CoOp,
CoCoOp) are not stacked (``stackable``). Losses stay on the device; non-finite ones are found
at the epoch's end, naming member and step, as one run does.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from xmic.train.config import TrainConfig
from xmic.train.data import batch
from xmic.train.loop import TrainingDiverged, make_optimiser


def stackable(cfg: TrainConfig) -> bool:
    """Whether a method's members can share one stacked model: trainable, no text tower."""
    return cfg.record.stackable


class StackedRuns:
    def __init__(self, cfgs: list[TrainConfig], models: list[torch.nn.Module],
                 train_segments: int, device):
        base = cfgs[0]
        for c in cfgs[1:]:
            if {**c.__dict__, "seed": 0} != {**base.__dict__, "seed": 0}:
                raise ValueError("stacked runs must differ only in their seed")
        self.cfgs, self.cfg, self.device = cfgs, base, torch.device(device)
        self.params, self.buffers = stack_module_state(models)        # {name: [S, ...]}
        self.template = copy.deepcopy(models[0]).to("meta")
        grad = dict(models[0].named_parameters())
        holder = torch.nn.ParameterList([torch.nn.Parameter(p, requires_grad=grad[n].requires_grad)
                                         for n, p in self.params.items()])
        self.params = dict(zip(self.params, holder))
        _, self.opt, self.sched, self.scaler, self.amp = make_optimiser(holder, base,
                                                                        train_segments, device)
        self._slots = {n: i for i, n in enumerate(n for n, p in self.params.items()
                                                  if p.requires_grad)}
        self.gens = [torch.Generator(device=device).manual_seed(c.seed) for c in cfgs]
        self._member = copy.deepcopy(models[0])

    def __len__(self) -> int:
        return len(self.cfgs)

    def _forward(self, f, x, w):
        def one(p, b, f1, x1):
            return functional_call(self.template, (p, b), (f1, x1, w))
        return vmap(one, in_dims=(0, 0, 0, None if x is None else 0))(
            self.params, self.buffers, f, x)                            # [S, B, C]

    def epoch(self, bank, w: torch.Tensor, epoch: int, where: str):
        """One pass for every member: per member its train loss and top-1, each step's loss
        [steps, S] and each step's lr."""
        cfg, S = self.cfg, len(self)
        cls, cond = cfg.feeds()
        orders = [torch.randperm(len(bank), generator=g, device=bank.labels.device)
                  for g in self.gens]
        losses, lrs, sizes = [], [], []
        correct = torch.zeros(S, dtype=torch.long, device=self.device)
        for segs in zip(*(o.split(cfg.batch_size) for o in orders)):
            drawn = [batch(bank, s, cls, cond, cfg.frames, g, train=True)
                     for s, g in zip(segs, self.gens)]
            f = torch.stack([d[0] for d in drawn])                      # [S, B, T, D]
            x = torch.stack([d[1] for d in drawn]) if cond else None    # [S, B, T, V, D']
            y = torch.stack([d[2] for d in drawn])                      # [S, B]
            with torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                                enabled=self.amp is not None):
                logits = self._forward(f, x, w)                         # [S, B, C]
            each = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(),
                                   reduction="none").view(S, -1).mean(1)  # [S]
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(each.sum()).backward()  # member s's gradient is its own loss's
            self.scaler.step(self.opt)
            self.scaler.update()
            lrs.append(self.opt.param_groups[0]["lr"])
            self.sched.step()
            losses.append(each.detach())
            correct += (logits.argmax(-1) == y).sum(1)
            sizes.append(len(segs[0]))
        values = torch.stack(losses).float().cpu()                      # [steps, S]
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            k, s = int(bad[0][0]), int(bad[0][1])
            raise TrainingDiverged(f"{where}: training diverged at epoch {epoch}, step {k + 1}, "
                                   f"seed {self.cfgs[s].seed}: the loss is {values[k, s].item()}")
        weights = torch.tensor(sizes, dtype=torch.float32)[:, None]
        seen = sum(sizes)
        totals = (values * weights).sum(0)
        return ([{"train_loss": float(totals[s]) / seen,
                  "train_top1": 100 * int(correct[s]) / seen} for s in range(S)], values, lrs)

    def member(self, s: int) -> torch.nn.Module:
        """Member s as a plain model (its weights copied out of the stack)."""
        state = {k: v[s].detach() for k, v in {**self.params, **self.buffers}.items()}
        self._member.load_state_dict(state)
        return self._member


    def optimizer_state(self, s: int) -> dict:
        """Member s's AdamW state, as its own run's optimiser would hold it (its parameters in
        its model's order, each moment its slice of the stack): a separate run resumes it."""
        full = self.opt.state_dict()
        state = {}
        for i, slot in enumerate(self._slots.values()):
            if slot in full["state"]:
                state[i] = {k: (v[s].clone() if torch.is_tensor(v) and v.dim() > 0 else v)
                            for k, v in full["state"][slot].items()}
        group = {**full["param_groups"][0], "params": list(range(len(self._slots)))}
        return {"state": state, "param_groups": [group]}
