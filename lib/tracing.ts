import { context, propagation, trace, type Context, type Span, SpanKind } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, ConsoleSpanExporter, NoopSpanProcessor, SimpleSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

export type TracingExporter = 'off' | 'console' | 'otlp';

export interface Tracing {
  resource: Resource;
  /** Where finished spans go (a no-op when tracing is off: spans and trace ids still exist for logs). */
  spanProcessor: SpanProcessor;
  shutdown(): Promise<void>;
}

let installed: Tracing | undefined;

/**
 * OpenTelemetry for one process: a tracer provider with W3C trace-context propagation and async context,
 * so a trace starts at the API request, rides Temporal headers into the workflow and its activities
 * (Temporal's interceptors), and every log line can carry its trace id. Exporting is off by default.
 */
/** `processor` replaces the exporter choice (tests collect spans in memory). */
export function initTracing(service: string, exporter: TracingExporter = 'off', otlpEndpoint?: string, processor?: SpanProcessor): Tracing {
  if (installed) return installed;
  const resource = new Resource({ 'service.name': `payout-platform-${service}` });
  const spanProcessor =
    processor ??
    (exporter === 'console'
      ? new SimpleSpanProcessor(new ConsoleSpanExporter())
      : exporter === 'otlp'
        ? new BatchSpanProcessor(new OTLPTraceExporter(otlpEndpoint ? { url: `${otlpEndpoint.replace(/\/$/, '')}/v1/traces` } : {}))
        : new NoopSpanProcessor());
  const provider = new NodeTracerProvider({ resource, spanProcessors: [spanProcessor] });
  provider.register();
  installed = { resource, spanProcessor, shutdown: () => provider.shutdown() };
  return installed;
}

export const tracer = () => trace.getTracer('payout-platform');

/** The trace and span ids of the active span, for log lines. */
export function activeTraceIds(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan();
  if (!span) return {};
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}

/** Starts a server span for an incoming request, continuing the caller's trace (traceparent) if any. */
export function startServerSpan(name: string, headers: Record<string, unknown>): { span: Span; ctx: Context } {
  const parent = propagation.extract(context.active(), headers);
  const span = tracer().startSpan(name, { kind: SpanKind.SERVER }, parent);
  return { span, ctx: trace.setSpan(parent, span) };
}
