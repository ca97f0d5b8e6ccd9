/** Cutting a recorded history at a workflow task boundary, as core writes it when a task completion runs ahead of the workflow code. */
import { Worker } from '@temporalio/worker';
import { inject } from 'vitest';

export type JsonEvent = { eventId: string; eventType: string; [key: string]: unknown };
export type JsonHistory = { events: JsonEvent[] };

export const bundle = () => ({ workflowBundle: { codePath: inject('workflowBundlePath') } });

/** Shifts every `…EventId` reference at or after `from` by `by` (event ids are strings in the JSON form). */
function shiftReferences(value: unknown, from: number, by: number): void {
  if (!value || typeof value !== 'object') return;
  for (const [key, v] of Object.entries(value)) {
    if (key.endsWith('EventId') && typeof v === 'string' && Number(v) >= from) (value as Record<string, unknown>)[key] = String(Number(v) + by);
    else shiftReferences(v, from, by);
  }
}

/**
 * The history as core writes it when a task completion carries the markers up to `events[index]`
 * (exclusive) and the workflow's next commands only reach the server in the following task.
 */
export function splitTaskBefore(history: JsonHistory, index: number): JsonHistory {
  const events = structuredClone(history.events);
  const completed = events.slice(0, index).findLast((e) => e.eventType === 'EVENT_TYPE_WORKFLOW_TASK_COMPLETED')!;
  const scheduled = events.find((e) => e.eventId === (completed.workflowTaskCompletedEventAttributes as { scheduledEventId: string }).scheduledEventId)!;
  const started = events.find((e) => e.eventId === (completed.workflowTaskCompletedEventAttributes as { startedEventId: string }).startedEventId)!;
  const at = Number(events[index]!.eventId);
  for (const e of events.slice(index)) {
    e.eventId = String(Number(e.eventId) + 3);
    shiftReferences(e, at, 3);
  }
  const ids = { scheduled: String(at), started: String(at + 1), completed: String(at + 2) };
  const inserted: JsonEvent[] = [
    { ...structuredClone(scheduled), eventId: ids.scheduled },
    { ...structuredClone(started), eventId: ids.started, workflowTaskStartedEventAttributes: { ...(started.workflowTaskStartedEventAttributes as object), scheduledEventId: ids.scheduled } },
    {
      ...structuredClone(completed),
      eventId: ids.completed,
      workflowTaskCompletedEventAttributes: { ...(completed.workflowTaskCompletedEventAttributes as object), scheduledEventId: ids.scheduled, startedEventId: ids.started },
    },
  ];
  // The commands after the cut were sent with the new task's completion.
  for (const e of events.slice(index)) {
    if (e.eventType.startsWith('EVENT_TYPE_WORKFLOW_TASK_')) break;
    for (const [key, v] of Object.entries(e)) {
      if (key.endsWith('Attributes') && v && typeof v === 'object' && 'workflowTaskCompletedEventId' in v) (v as Record<string, unknown>).workflowTaskCompletedEventId = ids.completed;
    }
  }
  events.splice(index, 0, ...inserted);
  return { ...history, events };
}

/** The id of the task completion that sent this command event, if it is one. */
function sentBy(e: JsonEvent): string | undefined {
  const attributes = Object.entries(e).find(([key]) => key.endsWith('Attributes'))?.[1] as { workflowTaskCompletedEventId?: string } | undefined;
  return attributes?.workflowTaskCompletedEventId;
}

/** Every place where a local activity's marker is followed by another command of the same task. */
export function boundariesAfterLocalActivities(history: JsonHistory): number[] {
  const cuts: number[] = [];
  history.events.forEach((e, i) => {
    const next = history.events[i + 1];
    const isLocalActivity = e.eventType === 'EVENT_TYPE_MARKER_RECORDED' && (e.markerRecordedEventAttributes as { markerName?: string }).markerName === 'core_local_activity';
    if (isLocalActivity && next && sentBy(next) !== undefined && sentBy(next) === sentBy(e)) cuts.push(i + 1);
  });
  return cuts;
}

export async function replay(history: JsonHistory, name: string): Promise<string | undefined> {
  try {
    await Worker.runReplayHistory(bundle(), history, name);
    return undefined;
  } catch (err) {
    return String((err as Error).message);
  }
}

