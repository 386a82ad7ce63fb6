"""A workflow whose task starts a span of its own, as user code may: it must join its execution's trace."""

from opentelemetry import trace

from plait import task, workflow


@task
def measured(text: str) -> str:
    with trace.get_tracer("user-code").start_as_current_span("user.work") as span:
        span.set_attribute("user.length", len(text))
        return text.upper()


@task
def doubled(text: str) -> str:
    return text + text


@workflow
def traced(text: str = "trace") -> str:
    return doubled(text=measured(text=text))


@task
def trace_seen() -> str:
    """The trace id current while the task runs ("" when none)."""
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else ""
