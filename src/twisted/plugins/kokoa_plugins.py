"""twistd plugins: ``twistd kokoa`` (gateway) and ``twistd kokoa-edge`` (edge).

Only ServiceMakers live here, naming their modules by string, so that
``twistd --help`` does not import Kokoa.
"""

from twisted.application.service import ServiceMaker

kokoa_gateway = ServiceMaker(
    "Kokoa gateway", "kokoa.gateway.tap", "Kokoa gateway: edge tunnels in, resources out.", "kokoa"
)
kokoa_edge = ServiceMaker(
    "Kokoa edge", "kokoa.edge.tap", "Kokoa edge: dials the gateway, serves its targets.", "kokoa-edge"
)
