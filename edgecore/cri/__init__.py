"""The container runtime (CRI over gRPC) and the labels our pods carry in it: shared by edged,
which runs the pods, and edgestream, which serves their logs and exec."""
