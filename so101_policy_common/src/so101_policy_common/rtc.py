"""What LeRobot's real-time chunking (`lerobot-rollout --inference.type=rtc`) assumes of a policy, checked by the
suite's policies in their own words: a horizon the chunk can hold (checked while the policy is made, before the
robot connects), a chunk longer than the measured inference delay (checked at each chunk), and, for a policy RTC
cannot drive, a refusal that says why instead of LeRobot's generic one.

LeRobot's RTC thread catches an error from the policy, retries it ten times, then stops the rollout; the command
still exits 0 and prints "Rollout finished". A refusal at load time is the only one a user cannot miss, so every
condition knowable from the checkpoint and the flags is checked there."""

from lerobot.policies.rtc.configuration_rtc import RTCConfig


def rtc_enabled(rtc_config: RTCConfig | None) -> bool:
    return rtc_config is not None and rtc_config.enabled


def check_rtc_horizon(policy: str, rtc_config: RTCConfig | None, chunk_size: int, field: str = "chunk_size") -> None:
    """The execution horizon is the part of the previous chunk's leftover the next chunk is steered to continue:
    longer than a chunk, the leftover padded to it no longer fits the chunk (a shape error at every inference)."""
    if not rtc_enabled(rtc_config) or rtc_config.execution_horizon <= chunk_size:
        return
    raise ValueError(
        f"--inference.rtc.execution_horizon={rtc_config.execution_horizon} is longer than this {policy} "
        f"checkpoint's chunk ({field}={chunk_size}): RTC steers the first execution_horizon actions of each new "
        f"chunk toward the previous one's leftover, so it must fit in a chunk. Pass "
        f"--inference.rtc.execution_horizon={chunk_size} or less, or use --inference.type=sync."
    )


def check_rtc_delay(policy: str, inference_delay: int | None, chunk_size: int) -> None:
    """RTC drops the actions of a new chunk that fall within the inference's own latency (they are already past).
    A chunk no longer than that delay is dropped whole: the robot would never move while the command reports
    success, so the chunk is refused instead."""
    if inference_delay is None or inference_delay < chunk_size:
        return
    raise RuntimeError(
        f"{policy} under RTC: one inference takes {inference_delay} control steps (LeRobot's measured latency x "
        f"--fps), as long as or longer than the whole chunk of {chunk_size} actions, so RTC would drop every action "
        f"as already past and the robot would never move. Use a checkpoint with a longer chunk, a lower --fps, a "
        f"faster device, or --inference.type=sync."
    )


class RefusesRTC:
    """Policy mixin for a policy RTC cannot drive. LeRobot asks `supports_rtc()` only while lerobot-rollout builds
    an RTC engine, before the robot connects, and refuses a False with a generic message; raising here instead
    refuses at the same moment with this policy's reason (`rtc_refusal`)."""

    rtc_refusal: str = ""

    def supports_rtc(self) -> bool:
        raise ValueError(
            f"'{self.name}' cannot run under --inference.type=rtc: {self.rtc_refusal} Use --inference.type=sync."
        )
