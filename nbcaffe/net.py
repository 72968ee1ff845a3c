"""Instantiated nets and plans: what ``CreateNet``, ``RunNet`` and ``RunPlan`` run.

A :class:`NetInstance` creates one :class:`~nbcaffe.operator.Operator` per OperatorDef, once
(kernel lookup, argument parsing and schema checks happen here, not per run), and runs them
in order.  Every executor type Caffe2 knew ('simple', 'dag', 'async_scheduling', ...) is
accepted and runs sequentially, which gives the same results.
"""

from __future__ import annotations

import time

import numpy as np

from nbcaffe import dispatch, errors, registry, threads
from nbcaffe.operator import wrap_failure
from nbcaffe.proto import caffe2_pb2

KNOWN_NET_TYPES = {"", "simple", "dag", "async_dag", "async_scheduling", "async_polling", "async_simple",
                   "singlethread_async", "prof_dag", "htrace_dag", "htrace_async_dag", "parallel",
                   "rnn", "opengl", "simple_refcount"}


def create_operator(op_def, workspace, *, index=0, net_name="", net_device_option=None, site=None):
    """Instantiate the Operator for one OperatorDef (schema lookup, dispatch, argument parsing)."""
    where = f"Op #{index} {op_def.type}" + (f" in net '{net_name}'" if net_name else "")
    try:
        record = registry.get_schema(op_def.type)
    except errors.UnsupportedOperatorError as exc:
        raise errors.UnsupportedOperatorError(f"{where}: {exc}" + (f"\n  created at: {site}" if site else "")) from None
    device_option = op_def.device_option if op_def.HasField("device_option") else net_device_option
    device_type = device_option.device_type if device_option is not None else 0
    try:
        kernel, engine = dispatch.find_kernel(op_def.type, device_type, op_def.engine)
        context = dispatch.context_for(device_option)
    except errors.UnsupportedOperatorError as exc:
        raise errors.UnsupportedOperatorError(f"{where}: {exc}" + (f"\n  created at: {site}" if site else "")) from None
    try:
        return record.op_class(op_def, workspace, index=index, net_name=net_name, kernel=kernel,
                               engine=engine, context=context, device_option=device_option, site=site)
    except errors.NbcaffeError as exc:
        if site:
            raise type(exc)(f"{exc}\n  created at: {site}") from None
        raise


class NetInstance:
    """A NetDef instantiated in a workspace.

    Args:
        net_def: the ``caffe2_pb2.NetDef``.
        workspace: the :class:`~nbcaffe.workspace.Workspace` whose blobs the ops read and write.
        sites: optional per-op creation sites ("file:line in func") for error messages.
        check_inputs: apply Caffe2's CreateNet rule (every input exists or is produced earlier).
    """

    def __init__(self, net_def, workspace, sites=None, check_inputs=True):
        if net_def.type not in KNOWN_NET_TYPES:
            raise errors.SchemaError(
                f"net '{net_def.name}': unknown net type '{net_def.type}'."
                f"{errors.did_you_mean(net_def.type, KNOWN_NET_TYPES - {''})}")
        self.net_def = net_def
        self.name = net_def.name
        self.workspace = workspace
        net_device = net_def.device_option if net_def.HasField("device_option") else None
        sites = list(sites or [])
        if check_inputs:
            self._check_inputs(sites)
        self.ops = []
        for index, op_def in enumerate(net_def.op):
            site = sites[index] if index < len(sites) else None
            self.ops.append(create_operator(op_def, workspace, index=index, net_name=self.name,
                                            net_device_option=net_device, site=site))
        blobs = workspace.blobs
        for op_def in net_def.op:  # Caffe2 creates every output blob when the op is constructed
            for name in op_def.output:
                blobs.setdefault(name, None)

    def _check_inputs(self, sites):
        blobs = self.workspace.blobs
        produced = set()
        for index, op_def in enumerate(self.net_def.op):
            for name in op_def.input:
                if name not in produced and name not in blobs:
                    site = sites[index] if index < len(sites) else None
                    hint = errors.did_you_mean(name, list(blobs) + list(produced))
                    scoped = [b for b in list(blobs) + list(produced) if b.endswith("/" + name)]
                    if scoped:
                        hint += f" (name-scoped blobs: {', '.join(scoped[:4])})"
                    raise errors.BlobNotFoundError(
                        f"Op #{index} {op_def.type} in net '{self.name}': Encountered a non-existing input"
                        f" blob: '{name}'. It is neither in workspace '{self.workspace.name}' nor produced by"
                        f" an earlier op of the net.{hint} Feed it (a dummy array of the right shape is"
                        f" enough) or run the net that creates it before CreateNet."
                        + (f"\n  created at: {site}" if site else ""))
            produced.update(op_def.output)

    def run(self, num_iter=1):
        """Run every op in order, ``num_iter`` times."""
        op = None
        ops = self.ops
        try:
            with threads.REGION:  # BLAS single-threaded while nbcaffe's pool owns the cores
                for _ in range(num_iter):
                    for op in ops:
                        op.run()
        except Exception as exc:
            if op is None:
                raise
            raise wrap_failure(op, exc) from exc
        return True


    def benchmark(self, warmup_runs, main_runs, run_individual):
        """Caffe2's BenchmarkNet: [ms per iteration] + (per-op ms when ``run_individual``).

        Device work is synchronised before every clock read, so GPU timings are honest.
        """
        import time

        sync = self._synchronize
        if warmup_runs:
            self.run(warmup_runs)
        sync()
        t0 = time.perf_counter()
        if main_runs:
            self.run(main_runs)
        sync()
        per_iter = (time.perf_counter() - t0) * 1e3 / max(main_runs, 1)
        result = [per_iter]
        if run_individual:
            totals = [0.0] * len(self.ops)
            op = None
            try:
                with threads.REGION:
                    for _ in range(max(main_runs, 1)):
                        for i, op in enumerate(self.ops):
                            t = time.perf_counter()
                            op.run()
                            sync()
                            totals[i] += time.perf_counter() - t
            except Exception as exc:
                raise wrap_failure(op, exc) from exc
            result += [total * 1e3 / max(main_runs, 1) for total in totals]
        return result

    def _synchronize(self):
        seen = set()
        for op in self.ops:
            ctx = op.ctx
            if id(ctx) not in seen:
                seen.add(id(ctx))
                ctx.synchronize()


# ----------------------------------------------------------------------------- plans

def _should_stop(workspace, blob_name) -> bool:
    if not blob_name:
        return False
    value = workspace.blobs.get(blob_name)
    if value is None:
        raise errors.BlobNotFoundError(
            f"should_stop_blob '{blob_name}' is not in the workspace (or holds no value); create it before the"
            f" step runs, e.g. ConstantFill(shape=[1], value=False, dtype=BOOL) in the init net")
    if not isinstance(value, np.ndarray):
        value = value.copy_to_host()
    if value.size != 1:
        raise errors.ShapeError(f"should_stop_blob '{blob_name}' must hold one value, has shape {value.shape}")
    return bool(value.reshape(-1)[0])


class PlanRunner:
    """Executes a PlanDef: its nets are instantiated once, then its execution steps run."""

    def __init__(self, plan_def, workspace):
        self.plan = plan_def
        self.workspace = workspace
        self.nets = {}
        for net_def in plan_def.network:
            if net_def.name in self.nets:
                raise errors.SchemaError(f"plan '{plan_def.name}': two nets are named '{net_def.name}'")
            self.nets[net_def.name] = net_def
        self._instances = {}

    def _net(self, name):
        instance = self._instances.get(name)
        if instance is None:
            net_def = self.nets.get(name)
            if net_def is None:
                existing = self.workspace.nets.get(name)
                if existing is None:
                    raise errors.SchemaError(
                        f"plan '{self.plan.name}': execution step names net '{name}', which is neither in"
                        f" the plan nor created in the workspace.{errors.did_you_mean(name, self.nets)}")
                instance = existing
            else:
                from nbcaffe import core

                instance = NetInstance(net_def, self.workspace, sites=core.creation_sites(net_def))
            self._instances[name] = instance
        return instance

    def run(self):
        for step in self.plan.execution_step:
            self.run_step(step)
        return True

    def run_step(self, step):
        """Run one ExecutionStep: its nets (or substeps) in order, ``num_iter`` times.

        ``should_stop_blob`` is read after every net or substep; when it holds true the step
        ends.  Without ``num_iter`` a step with a stop blob loops until the blob fires.
        ``concurrent_substeps`` is accepted and runs the substeps one after another.
        """
        if step.substep and step.network:
            raise errors.SchemaError(f"execution step '{step.name}' has both substeps and networks")
        stop_blob = step.should_stop_blob
        if step.HasField("num_iter"):
            num_iter = step.num_iter
        else:
            num_iter = None if stop_blob else 1
        if step.only_once and stop_blob:
            num_iter = 1
        report = self._net(step.report_net) if step.report_net else None
        report_every = step.report_interval
        last_report = time.monotonic()
        iteration = 0
        while num_iter is None or iteration < num_iter:
            if step.substep:
                for sub in step.substep:
                    self.run_step(sub)
                    if _should_stop(self.workspace, stop_blob):
                        return
            else:
                for name in step.network:
                    self._net(name).run()
                    if _should_stop(self.workspace, stop_blob):
                        return
            iteration += 1
            if report is not None and report_every and time.monotonic() - last_report >= report_every:
                report.run()
                last_report = time.monotonic()
        if report is not None:
            report.run()


def as_plan_def(plan_or_step):
    """Accept a PlanDef, core.Plan, ExecutionStep or core.ExecutionStep; return a PlanDef."""
    if isinstance(plan_or_step, caffe2_pb2.PlanDef):
        return plan_or_step
    if isinstance(plan_or_step, caffe2_pb2.ExecutionStep):
        plan = caffe2_pb2.PlanDef(name=plan_or_step.name)
        plan.execution_step.add().CopyFrom(plan_or_step)
        return plan
    proto = getattr(plan_or_step, "Proto", None)
    if proto is not None:
        return as_plan_def(proto())
    raise TypeError(f"RunPlan expects a PlanDef, core.Plan or ExecutionStep, got {type(plan_or_step).__name__}")
