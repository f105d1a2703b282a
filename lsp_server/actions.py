"""Code actions and hovers: pygls handlers over the assistant facade (issues 6 and 17).

`textDocument/codeAction` lists at once; the model runs in `codeAction/resolve` or in the
`codeflow.runAction` command, which streams the partial answer as cancellable `$/progress` and
applies the result with `workspace/applyEdit`. A hover answers at once with the known facts and
starts the explanation in the background; `codeflow.explainFunction` streams it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
from lsprotocol import types

from codeflow.context.edits import EditPlan
from codeflow.context.errors import ContextError, EditRejectedError
from codeflow.lsp_server import convert
from codeflow.lsp_server.assistant import explain, instruct
from codeflow.lsp_server.assistant.jobs import Cancelled, Job
from codeflow.lsp_server.protocol import WORK_DONE_TOKEN
from codeflow.lsp_server.server import CodeflowServer, fs_path, server
from codeflow.quant.backend import CancelToken
from codeflow.quant.errors import QuantError

RUN_ACTION = "codeflow.runAction"
EXPLAIN = "codeflow.explainFunction"
STATS = "codeflow/instructStats"
CODE_ACTION_KINDS = [types.CodeActionKind.QuickFix, types.CodeActionKind.RefactorExtract,
                     types.CodeActionKind.RefactorRewrite]
# Partial text goes out at most this often, so a fast model does not flood the client.
PROGRESS_EVERY_S = 0.1
# The change annotation every AI edit carries, so the editor previews it before applying.
ANNOTATION = "codeflow.ai"


# Progress --------------------------------------------------------------------------------------


async def _begin(ls: CodeflowServer, title: str, cancel: CancelToken) -> int | str | None:
    """Begin progress on the client's `workDoneToken` when the command came with one (the client
    listens on it, and LSP forbids creating it again), else on a token created here."""
    token = WORK_DONE_TOKEN.get()
    if token is None:
        token = await ls.new_progress_token()
        if token is None:
            return None
    ls.progress_cancels[str(token)] = cancel
    ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=title, cancellable=True))
    return token


def _reporter(ls: CodeflowServer, token: int | str | None, shown: Callable[[str], str]) -> Callable[[str], None]:
    """A thread-safe callback sending the partial text as `$/progress` reports, throttled."""
    loop = asyncio.get_running_loop()
    last = [0.0]

    def send(text: str) -> None:
        now = time.monotonic()
        if token is None or now - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = now
        report = types.WorkDoneProgressReport(message=shown(text), cancellable=True)
        loop.call_soon_threadsafe(ls.work_done_progress.report, token, report)

    return send


def _end(ls: CodeflowServer, token: int | str | None, message: str) -> None:
    if token is not None:
        ls.progress_cancels.pop(str(token), None)
        ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message or None))


@server.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
def work_done_progress_cancel(ls: CodeflowServer, params: types.WorkDoneProgressCancelParams) -> None:
    """The user pressed cancel on an action's or explanation's progress."""
    cancel = ls.progress_cancels.get(str(params.token))
    if cancel is not None:
        cancel.cancel()


# Code actions ----------------------------------------------------------------------------------


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(code_action_kinds=CODE_ACTION_KINDS, resolve_provider=True),
)
async def code_action(ls: CodeflowServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """List the AI actions for a range at once; nothing runs the model here."""
    uri, r = params.text_document.uri, params.range
    try:
        doc = ls.workspace.get_text_document(uri)
        text, _ = await ls.read(uri)
        language = convert.language_of(doc.path or uri, doc.language_id)
        diags = [_diagnostic(d) for d in params.context.diagnostics]
        offers = await asyncio.to_thread(
            instruct.list_actions, uri, doc.version, text, language,
            (r.start.line, r.start.character), (r.end.line, r.end.character), diags,
        )
    except ContextError as exc:
        ls.report.log(f"code actions not listed for {uri}: {exc}", types.MessageType.Warning)
        return []
    only = params.context.only
    resolve = _resolves(ls)
    return [_code_action(o, resolve) for o in offers if not only or any(_within(o.kind, k) for k in only)]


def _diagnostic(d: types.Diagnostic) -> instruct.DiagnosticInfo:
    return instruct.DiagnosticInfo(
        message=d.message, line=d.range.start.line, character=d.range.start.character,
        end_line=d.range.end.line, end_character=d.range.end.character, source=d.source or "",
    )


def _within(kind: str, wanted: str) -> bool:
    return kind == wanted or kind.startswith(f"{wanted}.")


def _resolves(ls: CodeflowServer) -> bool:
    ca = ls.client_capabilities.text_document and ls.client_capabilities.text_document.code_action
    return bool(ca and ca.resolve_support and "edit" in ca.resolve_support.properties)


def _code_action(offer: instruct.Offer, resolve: bool) -> types.CodeAction:
    data = msgspec.to_builtins(offer.data)
    command = None if resolve else types.Command(title=offer.title, command=RUN_ACTION, arguments=[data])
    return types.CodeAction(title=offer.title, kind=offer.kind, data=data, command=command)


@server.feature(types.CODE_ACTION_RESOLVE)
async def code_action_resolve(ls: CodeflowServer, action: types.CodeAction) -> types.CodeAction:
    """Run the model for a picked action; the edit comes back on the action (or none, with a message)."""
    result = await _run(ls, action.data, action.title)
    if result is not None:
        action.edit = result[0]
    return action


@server.command(RUN_ACTION)
async def run_action(ls: CodeflowServer, *args: Any) -> dict:
    """Run an action with streamed, cancellable progress, then apply it with `workspace/applyEdit`."""
    result = await _run(ls, args[0] if args else None, "Codeflow")
    if result is None:
        return {"applied": False, "text": ""}
    edit, plan = result
    answer = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label="Codeflow"))
    if not answer.applied:
        ls.report.show(f"the editor did not apply the edit: {answer.failure_reason or 'no reason given'}",
                       types.MessageType.Warning, limit=False)
    return {"applied": answer.applied, "text": plan.code}


async def _run(ls: CodeflowServer, raw: object, title: str) -> tuple[types.WorkspaceEdit, EditPlan] | None:
    """Run one action on the document as it is now; None (with a message) when it cannot apply."""
    try:
        data = msgspec.convert(raw, instruct.ActionData)
        title = _short_title(data.action, title)
        doc = ls.workspace.get_text_document(data.uri)
        text, version = ls.read_open(data.uri)  # an edit needs a document the editor holds
        language = convert.language_of(doc.path or data.uri, doc.language_id)
        # The listing's lines belong to the version it saw; aim them at this text first (issue 11).
        data = instruct.relocate(data, text, version)
        local_only = ls.is_private(doc.path or data.uri, "code actions")
        if local_only is None:
            return None
    except EditRejectedError as exc:
        ls.report.error(exc, f"{title}: ", asked=True)
        return None
    except (msgspec.ValidationError, ContextError) as exc:
        ls.report.error(exc, "cannot run this action: ", asked=True)
        return None
    job = ls.assistant.action_job()
    token = await _begin(ls, title, job.cancel)
    outcome = "cancelled"
    on_text = _reporter(ls, token, lambda t: instruct.display_answer(t, f"```{language}\n"))
    try:
        plan = await ls.in_model_thread(ls.assistant.run_action, data, fs_path(data.uri), text, language, job,
                                        on_text, local_only)
        outcome = "done"
    except asyncio.CancelledError:
        job.cancel.cancel()
        raise
    except Cancelled:
        return None
    except (QuantError, ContextError, ValueError) as exc:
        outcome = f"{'rejected' if isinstance(exc, EditRejectedError) else 'failed'}: {exc}"
        ls.report.error(exc, f"{title}: " if isinstance(exc, EditRejectedError) else f"{title} failed: ",
                        asked=True)
        return None
    finally:
        _end(ls, token, outcome)
    return _checked_edit(ls, data, text, version, plan, title, language)


def _short_title(action: str, fallback: str) -> str:
    """An action's title without its details: "Simplify", "Fix with AI"."""
    kind = instruct.KINDS.get(action)
    return kind.title.split(":")[0].removesuffix(" (AI)") if kind is not None else fallback


def _checked_edit(ls: CodeflowServer, data: instruct.ActionData, text: str, version: int | None,
                  plan: EditPlan, title: str, language: str) -> tuple[types.WorkspaceEdit, EditPlan] | None:
    """The WorkspaceEdit for the document as it is now: the plan as made when the user did not type
    meanwhile, else made again where the rewritten lines now are (found once, unchanged), else None."""
    try:
        now_text, now_version = ls.read_open(data.uri)
        if now_version != version or now_text != text:
            plan = ls.assistant.rebase(plan, data, text, now_text, language)
    except ContextError as exc:
        ls.report.error(exc, f"{title}: the document changed while the model was answering: ", asked=True)
        return None
    return _workspace_edit(ls, data.uri, now_version, now_text, plan, title), plan


def _workspace_edit(ls: CodeflowServer, uri: str, version: int | None, text: str, plan: EditPlan,
                    title: str) -> types.WorkspaceEdit:
    """The plan's edits for one document version; annotated for a confirming preview where the
    client supports change annotations (LSP 3.16 `changeAnnotationSupport`)."""
    lines = text.split("\n")
    annotate = _annotates(ls)
    changes: list[types.TextEdit | types.AnnotatedTextEdit] = []
    for e in plan.edits:
        span = types.Range(start=_position(lines, e.start_line, e.start_col),
                           end=_position(lines, e.end_line, e.end_col))
        changes.append(types.AnnotatedTextEdit(range=span, new_text=e.new_text, annotation_id=ANNOTATION)
                       if annotate else types.TextEdit(range=span, new_text=e.new_text))
    doc_id = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
    notes = {ANNOTATION: types.ChangeAnnotation(label=f"Codeflow: {title}", needs_confirmation=True,
                                                description="written by the AI model; review before applying")}
    return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=doc_id, edits=changes)],
                               change_annotations=notes if annotate else None)


def _annotates(ls: CodeflowServer) -> bool:
    ws = ls.client_capabilities.workspace
    return bool(ws and ws.workspace_edit and ws.workspace_edit.change_annotation_support is not None)


def _position(lines: list[str], line: int, col: int) -> types.Position:
    """A code-point column as an LSP (UTF-16) position."""
    head = lines[line][:col] if line < len(lines) else ""
    return types.Position(line=line, character=len(head.encode("utf-16-le")) // 2)


# Hover -----------------------------------------------------------------------------------------


@server.feature(types.TEXT_DOCUMENT_HOVER)
async def hover(ls: CodeflowServer, params: types.HoverParams) -> types.Hover | None:
    """The known facts at once, plus the explanation if it is cached or ready within hover.waitMs."""
    settings = ls.assistant.settings.hover
    found = await _facts(ls, params.text_document.uri, params.position) if settings.enabled else None
    if found is None:
        return None
    facts, span = found
    explainer = ls.assistant.explainer
    text, note = explainer.cached(facts), ""
    if text is None:
        text, note = await _first_sentence(explainer.start(facts, settings.explain_max_tokens), settings.wait_ms)
    value = explain.markdown(facts, text, note)
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=value), range=span)


async def _first_sentence(job: Job, wait_ms: int) -> tuple[str | None, str]:
    """(text, note) for a hover: up to `wait_ms` for the whole explanation or its first sentence.

    A hover is a snapshot that no client refreshes, so "being written" stayed forever (issue 13):
    a short first sentence is worth the wait, and the rest streams through `codeflow.explainFunction`
    into the editor's explanation view."""
    deadline = time.monotonic() + wait_ms / 1000
    while not job.done and explain.first_sentence(job.text) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if job.done and job.error is None:
        return job.text, ""
    if job.error is not None and not isinstance(job.error, Cancelled):
        return None, f"explanation unavailable: {job.error}"
    first = explain.first_sentence(job.text)
    if first is not None:
        return first, "the explanation goes on: Codeflow Explain shows all of it as it is written"
    return None, "explanation is being written… Codeflow Explain shows it as it is written"


async def _facts(ls: CodeflowServer, uri: str, position: types.Position) -> tuple[explain.Facts, types.Range] | None:
    try:
        doc = ls.workspace.get_text_document(uri)
        prefix, suffix = convert.split_at((await ls.read(uri))[0], position)
    except ContextError as exc:
        ls.report.log(f"no hover for {uri}: {exc}", types.MessageType.Warning)
        return None
    line_text = prefix[prefix.rfind("\n") + 1:] + suffix.split("\n", 1)[0]
    col = len(prefix) - prefix.rfind("\n") - 1
    # Off any word (a blank line in a body) the hover or explanation is of the enclosing function.
    word = explain.word_at(line_text, col) or ("", col, col)
    language = convert.language_of(doc.path or uri, doc.language_id)
    # The explainer is shared by every document: a private one gets no AI explanation at all.
    if ls.is_private(doc.path or uri, "explain", local_ok=False) is None:
        return None
    facts = await asyncio.to_thread(ls.assistant.describe, fs_path(uri), prefix + suffix, language,
                                    position.line, word[0])
    if facts is None:
        return None
    lines = [line_text]
    span = types.Range(start=_position(lines, 0, word[1]), end=_position(lines, 0, word[2]))
    span.start.line = span.end.line = position.line
    return facts, span


@server.command(EXPLAIN)
async def explain_function(ls: CodeflowServer, *args: Any) -> dict:
    """Stream the explanation of the function at {uri, position} through `$/progress`; returns {text}."""
    try:
        target = msgspec.convert(args[0] if args else None, convert.CursorArg)
    except msgspec.ValidationError as exc:
        ls.report.show(f"{EXPLAIN} expects [{{uri, position}}]: {exc}", types.MessageType.Warning)
        return {"text": ""}
    position = types.Position(line=target.position.line, character=target.position.character)
    found = await _facts(ls, target.uri, position)
    if found is None:
        return {"text": ""}
    facts = found[0]
    cached = ls.assistant.explainer.cached(facts)
    if cached is not None:
        return {"text": cached}
    return await _stream_explanation(ls, facts)


async def _stream_explanation(ls: CodeflowServer, facts: explain.Facts) -> dict:
    explainer = ls.assistant.explainer
    job = explainer.start(facts, ls.assistant.settings.hover.explain_max_tokens, pinned=True)
    watcher = CancelToken()
    token = await _begin(ls, f"Explaining {facts.name}", watcher)
    sent, cancelled = "", False
    try:
        while not job.done and not watcher.cancelled:
            if token is not None and job.text != sent:
                sent = job.text
                ls.work_done_progress.report(token, types.WorkDoneProgressReport(message=sent, cancellable=True))
            await asyncio.sleep(PROGRESS_EVERY_S)
    except asyncio.CancelledError:
        cancelled = True
        raise
    finally:
        cancelled = cancelled or watcher.cancelled
        explainer.release(job, cancel=cancelled)
        _end(ls, token, "cancelled" if cancelled else "done")
    if cancelled or isinstance(job.error, Cancelled):
        return {"text": ""}
    if job.error is not None:
        ls.report.error(job.error, "explanation failed: ", asked=True)
        return {"text": "", "error": str(job.error)}
    return {"text": job.text}


@server.feature(STATS)
def instruct_stats(ls: CodeflowServer, params: object) -> dict:
    """Timings of the last code action and the last explanation."""
    return ls.assistant.instruct_stats()
