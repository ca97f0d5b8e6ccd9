import { Controller, Get, Inject, Param, Query, Req } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { Ledger } from '../../../ledger';
import type { Pool } from '../../../lib/db';
import { assertMayActOnAccount } from '../auth/auth';
import { parseOrProblem } from '../common/problem';
import { LEDGER, PG_POOL } from '../tokens';
import { accountIdSchema } from './accounts.schemas';
import { depositHistoryQuery, payoutHistoryQuery, statementQuery } from './listings.schemas';
import { ListingsService } from './listings.service';

/**
 * An account's history: its payouts and its deposits (two listings, each with its own statuses and fields,
 * from the read models) and its statement (ledger movements with running balances). A player sees only its
 * own account (403 otherwise), as on every player route; service and staff see any.
 */
@Controller('v1/accounts')
export class AccountListingsController {
  private readonly listings: ListingsService;

  constructor(@Inject(PG_POOL) pool: Pool, @Inject(LEDGER) ledger: Ledger) {
    this.listings = new ListingsService(pool, ledger);
  }

  @Get(':accountId/payouts')
  async payouts(@Param('accountId') accountId: string, @Query() query: unknown, @Req() request: FastifyRequest) {
    const id = this.account(accountId, request);
    return this.listings.payouts(id, parseOrProblem(payoutHistoryQuery, query ?? {}, 'query'), request.principal!.role);
  }

  @Get(':accountId/deposits')
  async deposits(@Param('accountId') accountId: string, @Query() query: unknown, @Req() request: FastifyRequest) {
    const id = this.account(accountId, request);
    return this.listings.deposits(id, parseOrProblem(depositHistoryQuery, query ?? {}, 'query'), request.principal!.role);
  }

  @Get(':accountId/statement')
  async statement(@Param('accountId') accountId: string, @Query() query: unknown, @Req() request: FastifyRequest) {
    const id = this.account(accountId, request);
    return this.listings.statement(id, parseOrProblem(statementQuery, query ?? {}, 'query'));
  }

  private account(accountId: string, request: FastifyRequest): string {
    const id = parseOrProblem(accountIdSchema, accountId, 'path');
    assertMayActOnAccount(request.principal, id);
    return id;
  }
}
