"""Plan builders (Caffe2's ``core.ExecutionStep``, ``core.execution_step``, ``core.Plan``):
protobuf ``ExecutionStep``/``PlanDef`` messages that ``workspace.RunPlan`` runs.  A step holds
either nets, run ``num_iter`` times in order, or substeps; ``core`` re-exports these names.
"""

from __future__ import annotations

import collections

from nbcaffe import errors
from nbcaffe.core import Net
from nbcaffe.proto import caffe2_pb2


def _net_name(net) -> str:
    return net if isinstance(net, str) else net.Name()


class ExecutionStep:
    """Builder of a ``caffe2_pb2.ExecutionStep``: nets (or substeps) run ``num_iter`` times."""

    def __init__(self, name, nets=None, num_iter=None):
        self._step = caffe2_pb2.ExecutionStep()
        self._step.name = name or "step"
        self._net_dict = collections.OrderedDict()
        self._substeps = []
        if nets is not None:
            if isinstance(nets, Net):
                nets = [nets]
            for net in nets:
                self.AddNet(net)
        if num_iter is not None:
            self._step.num_iter = num_iter

    def Name(self):
        return self._step.name

    def __str__(self):
        return self._step.name

    def Proto(self):
        return self._step

    def HasNets(self):
        return len(self._step.network) > 0

    def HasSubsteps(self):
        return len(self._step.substep) > 0

    def Nets(self):
        return list(self._net_dict.values())

    def Substeps(self):
        return list(self._substeps)

    def SetIter(self, num_iter):
        self._step.num_iter = num_iter

    def SetCreateWorkspace(self, create_workspace):
        self._step.create_workspace = create_workspace

    def SetNumConcurrentInstances(self, num_concurrent_instances):
        self._step.num_concurrent_instances = num_concurrent_instances

    def SetOnlyOnce(self, only_once):
        self._step.only_once = only_once

    def SetShouldStopBlob(self, should_stop_blob):
        self._step.should_stop_blob = str(should_stop_blob)

    def RunEveryMillis(self, interval):
        self._step.run_every_ms = interval

    def SetReportNet(self, report_net, report_interval):
        self._net_dict[_net_name(report_net)] = report_net
        self._step.report_net = _net_name(report_net)
        self._step.report_interval = report_interval

    def AddSubstep(self, substep):
        if self.HasNets():
            raise errors.SchemaError(f"step '{self.Name()}' already has nets; a step holds nets or substeps")
        if isinstance(substep, ExecutionStep):
            self._substeps.append(substep)
            for net in substep.Nets():
                self._net_dict.setdefault(net.Name(), net)
            proto = substep.Proto()
        else:
            proto = substep
        self._step.substep.add().CopyFrom(proto)
        return self

    def SetConcurrentSubsteps(self, concurrent_substeps):
        self._step.concurrent_substeps = concurrent_substeps

    def AddNet(self, net):
        if self.HasSubsteps():
            raise errors.SchemaError(f"step '{self.Name()}' already has substeps; a step holds nets or substeps")
        self._net_dict.setdefault(_net_name(net), net)
        self._step.network.append(_net_name(net))
        return self


def execution_step(default_name, steps_or_nets, num_iter=None, report_net=None, report_interval=None,
                   concurrent_substeps=None, should_stop_blob=None, only_once=None,
                   num_concurrent_instances=None, create_workspace=False, run_every_ms=None):
    """Build an ExecutionStep from a net, a list of nets, or a list of steps."""
    step = ExecutionStep(default_name)
    if should_stop_blob is not None:
        step.SetShouldStopBlob(should_stop_blob)
    if only_once is not None:
        step.SetOnlyOnce(only_once)
    if concurrent_substeps is not None:
        step.SetConcurrentSubsteps(concurrent_substeps)
    if num_concurrent_instances is not None:
        step.SetNumConcurrentInstances(num_concurrent_instances)
    if create_workspace:
        step.SetCreateWorkspace(True)
    if run_every_ms:
        step.RunEveryMillis(run_every_ms)
    if report_net is not None:
        step.SetReportNet(report_net, report_interval)
    if num_iter is not None:
        step.SetIter(num_iter)
    if isinstance(steps_or_nets, (Net, ExecutionStep)):
        steps_or_nets = [steps_or_nets]
    for item in steps_or_nets or []:
        if isinstance(item, ExecutionStep):
            step.AddSubstep(item)
        else:
            step.AddNet(item)
    return step


class Plan:
    """Builder of a ``caffe2_pb2.PlanDef``: nets plus the steps that run them."""

    def __init__(self, name_or_step):
        self._plan = caffe2_pb2.PlanDef()
        self._net_dict = collections.OrderedDict()
        self._steps = []
        if isinstance(name_or_step, ExecutionStep):
            self._plan.name = name_or_step.Name()
            self.AddStep(name_or_step)
        else:
            self._plan.name = str(name_or_step)

    def __str__(self):
        return self._plan.name

    def Proto(self):
        return self._plan

    def AddNets(self, nets):
        for net in nets:
            if net.Name() in self._net_dict:
                continue
            self._net_dict[net.Name()] = net
            self._plan.network.add().CopyFrom(net.Proto())

    def Nets(self):
        return list(self._net_dict.values())

    def AddStep(self, step):
        self._steps.append(step)
        self.AddNets([n for n in step.Nets() if isinstance(n, Net)])
        self._plan.execution_step.add().CopyFrom(step.Proto())

    def Steps(self):
        return list(self._steps)
