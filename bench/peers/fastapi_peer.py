"""The original design's collector (FastAPI + SQLAlchemy 2 async), same contract and tables, for the
benchmark: POST /metrics stores one run, its metrics and both daily summaries in one transaction
per report, as the original did. Not part of the platform."""

import os
from datetime import datetime
from decimal import Decimal
from typing import Optional, Union
from uuid import UUID, uuid4

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, DateTime, Integer, Numeric, String, Text, func
from sqlalchemy.dialects.postgresql import UUID as PgUUID, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["PEER_DATABASE_URL"], pool_size=10, max_overflow=10)
Session = async_sessionmaker(engine, expire_on_commit=False)
SECRET = os.environ["COLLECTOR_SECRET_KEY"]


class Base(DeclarativeBase):
    pass


class AgentRun(Base):
    __tablename__ = "agent_runs"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_key: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    agent_name: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20))
    error_message: Mapped[Optional[str]] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(BigInteger)
    metric_count: Mapped[int] = mapped_column(Integer)


class AgentMetric(Base):
    __tablename__ = "agent_metrics"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(BigInteger)
    agent_name: Mapped[str] = mapped_column(String(100))
    metric_name: Mapped[str] = mapped_column(String(200))
    metric_value: Mapped[Optional[Decimal]] = mapped_column(Numeric)
    metric_text: Mapped[Optional[str]] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DailySummary(Base):
    __tablename__ = "agent_daily_summaries"
    agent_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    day: Mapped[datetime] = mapped_column(primary_key=True)
    run_count: Mapped[int] = mapped_column(BigInteger)
    success_count: Mapped[int] = mapped_column(BigInteger)
    failure_count: Mapped[int] = mapped_column(BigInteger)
    total_duration_ms: Mapped[int] = mapped_column(BigInteger)
    min_duration_ms: Mapped[int] = mapped_column(BigInteger)
    max_duration_ms: Mapped[int] = mapped_column(BigInteger)
    last_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[str] = mapped_column(String(20))
    last_success_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))


class MetricDailySummary(Base):
    __tablename__ = "agent_metric_daily_summaries"
    agent_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    metric_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[datetime] = mapped_column(primary_key=True)
    value_count: Mapped[int] = mapped_column(BigInteger)
    value_sum: Mapped[Decimal] = mapped_column(Numeric)
    value_min: Mapped[Decimal] = mapped_column(Numeric)
    value_max: Mapped[Decimal] = mapped_column(Numeric)
    last_value: Mapped[Decimal] = mapped_column(Numeric)
    last_recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MetricPayload(BaseModel):
    agent_name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    metrics: dict[str, Union[bool, int, float, str]] = {}
    started_at: datetime
    finished_at: datetime
    error: Optional[str] = None
    run_key: Optional[UUID] = None


app = FastAPI()


async def get_session():
    async with Session() as session:
        yield session


def require_token(authorization: str = Header(default="")) -> dict:
    scheme, _, token = authorization.partition(" ")
    try:
        return jwt.decode(token, SECRET, algorithms=["HS256"])
    except jwt.PyJWTError:
        raise HTTPException(status_code=401, detail="invalid token")


@app.post("/metrics", status_code=201)
async def post_metrics(
    payload: MetricPayload, session: AsyncSession = Depends(get_session), _=Depends(require_token)
):
    if payload.finished_at < payload.started_at:
        raise HTTPException(status_code=422, detail="finished_at before started_at")
    status = "success" if payload.error is None else "failed"
    duration = int((payload.finished_at - payload.started_at).total_seconds() * 1000)
    run = AgentRun(
        run_key=payload.run_key or uuid4(), agent_name=payload.agent_name,
        started_at=payload.started_at, finished_at=payload.finished_at, status=status,
        error_message=payload.error, duration_ms=duration, metric_count=len(payload.metrics),
    )
    session.add(run)
    await session.flush()
    numbers = {}
    for name, value in payload.metrics.items():
        if isinstance(value, str):
            session.add(AgentMetric(run_id=run.id, agent_name=run.agent_name, metric_name=name,
                                    metric_text=value, recorded_at=run.finished_at))
        else:
            number = Decimal(str(int(value) if isinstance(value, bool) else value))
            numbers[name] = number
            session.add(AgentMetric(run_id=run.id, agent_name=run.agent_name, metric_name=name,
                                    metric_value=number, recorded_at=run.finished_at))
    await session.flush()
    day = run.started_at.date()
    upsert = insert(DailySummary).values(
        agent_name=run.agent_name, day=day, run_count=1, success_count=int(status == "success"),
        failure_count=int(status == "failed"), total_duration_ms=duration,
        min_duration_ms=duration, max_duration_ms=duration, last_run_at=run.started_at,
        last_status=status, last_success_at=run.started_at if status == "success" else None,
    )
    s = DailySummary
    await session.execute(upsert.on_conflict_do_update(
        index_elements=[s.agent_name, s.day],
        set_={
            "run_count": s.run_count + 1,
            "success_count": s.success_count + upsert.excluded.success_count,
            "failure_count": s.failure_count + upsert.excluded.failure_count,
            "total_duration_ms": s.total_duration_ms + duration,
            "min_duration_ms": func.least(s.min_duration_ms, duration),
            "max_duration_ms": func.greatest(s.max_duration_ms, duration),
            "last_run_at": func.greatest(s.last_run_at, upsert.excluded.last_run_at),
            "last_status": upsert.excluded.last_status,
            "last_success_at": func.greatest(s.last_success_at, upsert.excluded.last_success_at),
        },
    ))
    m = MetricDailySummary
    if numbers:
        upsert = insert(m).values([
            dict(agent_name=run.agent_name, metric_name=name, day=run.finished_at.date(),
                 value_count=1, value_sum=value, value_min=value, value_max=value,
                 last_value=value, last_recorded_at=run.finished_at)
            for name, value in sorted(numbers.items())
        ])
        new = upsert.excluded
        await session.execute(upsert.on_conflict_do_update(
            index_elements=[m.agent_name, m.metric_name, m.day],
            set_={
                "value_count": m.value_count + new.value_count,
                "value_sum": m.value_sum + new.value_sum,
                "value_min": func.least(m.value_min, new.value_min),
                "value_max": func.greatest(m.value_max, new.value_max),
                "last_value": new.last_value,
                "last_recorded_at": func.greatest(m.last_recorded_at, new.last_recorded_at),
            },
        ))
    await session.commit()
    return {"run_id": run.id}
