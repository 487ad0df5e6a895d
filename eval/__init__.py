"""The eval harness behind `make eval`: TTFT of warmed requests against cold ones and the floor."""
