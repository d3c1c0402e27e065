"""The container runtime, as edged and edgestream both reach it: the CRI client
(:mod:`.client`, gRPC), the runtime endpoint (:mod:`.endpoint`) and the labels edged puts on
what it creates (:mod:`.labels`). This package imports nothing: only the client loads gRPC."""
