"""Several seeds of one method trained together as one stacked model (``torch.func``).

Inputs: the members' ``TrainConfig``s (identical but for ``seed``), the number of training
segments, and per member the model its run alone would build for its seed. Output:
``StackedStepper``, a stepper (``xmic.train.steppers``) whose every parameter is stacked along a
leading member axis [S, ...], with one AdamW and one warm-up schedule over the stacked tensors
(AdamW is element-wise, so this is S optimisers in one) and per member its own sampling
generator, seeded as a separate run seeds it. At each step every member's batch ([S, B, T, D],
drawn by ``run_epoch`` as a run alone draws it) goes through one ``vmap`` of
``functional_call``, and the summed loss gives each member its own gradient. ``member(s)`` is
member s's model and ``member_state(s)`` its checkpoint's training state, with its own slice of
the AdamW state, so a member resumes alone. Results equal separate runs up to float rounding
(tests/test_stacked.py: weights within 1e-5 after 2 epochs on the CPU, the same selected
epochs). Methods with a frozen text tower in the forward (CoOp, CoCoOp) are not stacked
(``stackable``).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from xmic.train.config import TrainConfig
from xmic.train.steppers import make_optimiser


def stackable(cfg: TrainConfig) -> bool:
    """Whether a method's members can share one stacked model: trainable, no text tower."""
    return cfg.record.stackable


class StackedStepper:
    def __init__(self, cfgs: list[TrainConfig], models: list[torch.nn.Module],
                 train_segments: int, device):
        base = cfgs[0]
        for c in cfgs[1:]:
            if {**c.__dict__, "seed": 0} != {**base.__dict__, "seed": 0}:
                raise ValueError("stacked runs must differ only in their seed")
        if not stackable(base):
            raise ValueError(f"{base.method} is not stacked (a frozen text tower in its forward)")
        self.cfgs, self.cfg, self.device = cfgs, base, torch.device(device)
        self.params, self.buffers = stack_module_state(models)        # {name: [S, ...]}
        self.template = copy.deepcopy(models[0]).to("meta")
        grad = dict(models[0].named_parameters())
        holder = torch.nn.ParameterList([torch.nn.Parameter(p, requires_grad=grad[n].requires_grad)
                                         for n, p in self.params.items()])
        self.params = dict(zip(self.params, holder))
        _, self.opt, self.sched, self.scaler, self.amp = make_optimiser(holder, base,
                                                                        train_segments, device)
        self.trains = True
        self._slots = {n: i for i, n in enumerate(n for n, p in self.params.items()
                                                  if p.requires_grad)}
        self.gens = [torch.Generator(device=device).manual_seed(c.seed) for c in cfgs]
        self._member = copy.deepcopy(models[0])

    def __len__(self) -> int:
        return len(self.cfgs)

    @property
    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def _forward(self, f, x, w):
        def one(p, b, f1, x1):
            return functional_call(self.template, (p, b), (f1, x1, w))
        return vmap(one, in_dims=(0, 0, 0, None if x is None else 0))(
            self.params, self.buffers, f, x)                            # [S, B, C]

    def step(self, drawn: list[tuple], w: torch.Tensor):
        S = len(self)
        f = torch.stack([d[0] for d in drawn])                          # [S, B, T, D]
        x = (torch.stack([d[1] for d in drawn]) if drawn[0][1] is not None
             else None)                                                  # [S, B, T, V, D']
        y = torch.stack([d[2] for d in drawn])                          # [S, B]
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                            enabled=self.amp is not None):
            logits = self._forward(f, x, w)                             # [S, B, C]
        each = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(),
                               reduction="none").view(S, -1).mean(1)      # [S]
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(each.sum()).backward()  # member s's gradient is its own loss's
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        return each, logits, y

    def member(self, s: int) -> torch.nn.Module:
        """Member s as a plain model (its weights copied out of the stack)."""
        state = {k: v[s].detach() for k, v in {**self.params, **self.buffers}.items()}
        self._member.load_state_dict(state)
        return self._member

    def member_state(self, s: int) -> dict:
        return {"model": self.member(s).state_dict(), "optimizer": self.optimizer_state(s),
                "scaler": self.scaler.state_dict(), "scheduler": self.sched.state_dict(),
                "generator": self.gens[s].get_state()}

    def nonfinite(self, s: int) -> list[str]:
        return [n for n, p in self.params.items() if not torch.isfinite(p[s]).all()]

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
