"""Network namespaces and link impairment for benchmarks and tests (no netem needed).

`Namespace` is one network namespace held open by a small process; `Lab` builds a star of
namespaces around a router, joined by veth pairs; `Shaper` applies rate, delay and loss to the
traffic towards or from one of them through a userspace forwarder on a TUN device
(`netlab.forwarder`), because these kernels have no `sch_netem`.
"""

from netlab.lab import Lab, Leaf
from netlab.namespace import Namespace
from netlab.shaper import Impairment, Shaper

__all__ = ["Impairment", "Lab", "Leaf", "Namespace", "Shaper"]
