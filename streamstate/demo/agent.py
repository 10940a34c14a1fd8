"""The demo agent: a ReAct research subgraph, a human review, deterministic throughout.

The chat model is scripted (no network, no API key): asked a question, it calls the
``weather`` and ``calculator`` tools; shown their results, it drafts an answer. The
parent graph runs the research subgraph, pauses in ``review`` with ``interrupt()`` until
a human approves or rejects the draft, then publishes or revises it.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import interrupt
from typing_extensions import TypedDict

WEATHER = {
    "paris": "light rain, 14°C",
    "tokyo": "clear, 22°C",
    "lima": "overcast, 18°C",
    "oslo": "snow, -3°C",
    "nairobi": "sunny, 26°C",
}
"""The weather service the ``weather`` tool consults (fixed, so runs are reproducible)."""

QUESTIONS = [
    ("Paris", "17 * 23"),
    ("Tokyo", "(120 - 35) / 5"),
    ("Lima", "2 ** 10"),
    ("Oslo", "365 * 24"),
    ("Nairobi", "99 - 17 * 3"),
]
"""(city, arithmetic) pairs; session ``i`` asks about ``QUESTIONS[i % 5]``."""


def question(i: int) -> str:
    """The user message of demo session ``i``."""
    city, expr = QUESTIONS[i % len(QUESTIONS)]
    return f"What is the weather in {city}, and what is {expr}?"


_OPS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
}


def _evaluate(node: ast.AST) -> float:
    # A whitelist walk instead of eval(): the expression comes from a chat model.
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.operand))
    raise ValueError(f"unsupported expression: {ast.dump(node)}")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression (+, -, *, /, **, parentheses)."""
    value = _evaluate(ast.parse(expression, mode="eval"))
    return f"{value:g}" if isinstance(value, float) else str(value)


@tool
def weather(city: str) -> str:
    """Look up the current weather in a city."""
    return WEATHER.get(city.lower(), "no station reports from there")


TOOLS: list[BaseTool] = [weather, calculator]

_QUESTION = re.compile(r"weather in (?P<city>[^,]+), and what is (?P<expr>[^?]+)\?")


class ScriptedChatModel(BaseChatModel):
    """A deterministic chat model that plays a tool-using assistant.

    Given a user question, it requests one ``weather`` and one ``calculator`` call;
    given tool results, it drafts an answer from them; asked to revise, it says so.
    Tool-call ids count the messages so far, so every run produces the same ids.
    """

    @property
    def _llm_type(self) -> str:
        return "scripted-demo"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.respond(messages))])

    def respond(self, messages: Sequence[BaseMessage]) -> AIMessage:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            results = [m for m in messages if isinstance(m, ToolMessage)]
            facts = "; ".join(f"{m.name}: {m.content}" for m in results)
            return AIMessage(content=f"Here is what I found. {facts}.")
        match = _QUESTION.search(str(last.content))
        if match is None:
            return AIMessage(content="I can only answer weather-and-arithmetic questions.")
        n = len(messages)
        return AIMessage(
            content="",
            tool_calls=[
                {"id": f"call_{n}_weather", "name": "weather", "args": {"city": match["city"]}},
                {
                    "id": f"call_{n}_calc",
                    "name": "calculator",
                    "args": {"expression": match["expr"].strip()},
                },
            ],
        )


class ResearchState(TypedDict):
    messages: Annotated[list[BaseMessage], add_messages]


class AgentState(TypedDict, total=False):
    messages: Annotated[list[BaseMessage], add_messages]
    draft: str
    verdict: str
    answer: str


def build_research(model: BaseChatModel) -> CompiledStateGraph:
    """The ReAct loop: the model calls tools until it can answer."""

    def agent(state: ResearchState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def route(state: ResearchState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    g = StateGraph(ResearchState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode(TOOLS))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route, ["tools", END])
    g.add_edge("tools", "agent")
    # No checkpointer of its own: the parent's saver stores it under its namespace.
    return g.compile()


def build_agent(
    checkpointer: BaseCheckpointSaver[Any], model: BaseChatModel | None = None
) -> CompiledStateGraph:
    """The demo graph: research (subgraph) -> draft -> review (interrupt) -> publish."""
    research = build_research(model or ScriptedChatModel())

    def draft(state: AgentState) -> dict[str, Any]:
        return {"draft": str(state["messages"][-1].content)}

    def review(state: AgentState) -> dict[str, Any]:
        # Pauses the run; the value passed to Command(resume=...) is returned here.
        decision = interrupt({"question": "Publish this answer?", "draft": state["draft"]})
        return {"verdict": "approved" if decision.get("approved") else "rejected"}

    def publish(state: AgentState) -> dict[str, Any]:
        if state["verdict"] == "approved":
            answer = state["draft"]
        else:
            answer = "Withdrawn after review: " + state["draft"]
        return {"answer": answer, "messages": [AIMessage(content=answer)]}

    g = StateGraph(AgentState)
    g.add_node("research", research)
    g.add_node("draft", draft)
    g.add_node("review", review)
    g.add_node("publish", publish)
    g.add_edge(START, "research")
    g.add_edge("research", "draft")
    g.add_edge("draft", "review")
    g.add_edge("review", "publish")
    g.add_edge("publish", END)
    return g.compile(checkpointer=checkpointer)


def user_message(i: int) -> HumanMessage:
    return HumanMessage(content=question(i))
