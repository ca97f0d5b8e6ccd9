import { Body, Controller, Get, HttpCode, Inject, Param, Post, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { isLedgerError, type Account, type Ledger } from '../../../ledger';
import { assertMayActOnAccount } from '../auth/auth';
import { parseOrProblem, ProblemError } from '../common/problem';
import type { RouteDoc } from '../docs/openapi';
import { LEDGER } from '../tokens';
import { accountBody, accountIdSchema, balanceBody, createAccountBody } from './accounts.schemas';

function toBody(account: Account): z.infer<typeof accountBody> {
  return { account_id: account.id, currency: account.currency, created_at: account.createdAt };
}

@Controller('v1/accounts')
export class AccountsController {
  constructor(@Inject(LEDGER) private readonly ledger: Ledger) {}

  /** Opens a player account: 201 when created, 200 with the same body when it already exists as asked. */
  @Post()
  @HttpCode(201)
  async create(@Body() body: unknown, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const input = parseOrProblem(createAccountBody, body);
    assertMayActOnAccount(request.principal, input.account_id);
    const outcome = await this.ledger.createAccount({ accountId: input.account_id, currency: input.currency, kind: 'player' });
    switch (outcome.result) {
      case 'ok':
        return toBody(outcome.account);
      case 'exists':
        void reply.status(200);
        return toBody(outcome.account);
      case 'exists_with_different_currency':
        throw new ProblemError('ACCOUNT_EXISTS_WITH_DIFFERENT_CURRENCY', `Account ${input.account_id} exists in ${outcome.account.currency}`);
      case 'exists_with_different_kind':
      case 'exists_with_different_flags':
        throw new ProblemError('ACCOUNT_ID_TAKEN', `Account id ${input.account_id} is in use by a non-player account`);
      default:
        if (isLedgerError(outcome) && outcome.result === 'unknown_currency') throw new ProblemError('UNKNOWN_CURRENCY', outcome.detail);
        throw new ProblemError('VALIDATION_FAILED', isLedgerError(outcome) ? outcome.detail : 'invalid account');
    }
  }

  @Get(':accountId/balance')
  async balance(@Param('accountId') accountId: string, @Req() request: FastifyRequest) {
    const id = parseOrProblem(accountIdSchema, accountId, 'path');
    assertMayActOnAccount(request.principal, id);
    const balance = await this.ledger.getBalance(id);
    if (!balance) throw new ProblemError('ACCOUNT_NOT_FOUND', `No account ${id}`);
    return balanceBody.parse(balance);
  }
}

export const accountRoutes: RouteDoc[] = [
  {
    method: 'post',
    path: '/v1/accounts',
    summary: 'Open a player account in one currency (idempotent by account id)',
    tag: 'accounts',
    auth: 'any',
    body: createAccountBody,
    responses: {
      201: { description: 'Created', schema: accountBody },
      200: { description: 'Already exists with this currency (same body as the 201)', schema: accountBody },
      400: { description: 'Invalid body (VALIDATION_FAILED, MALFORMED_JSON)' },
      403: { description: 'A player may open only the account whose id is its token subject' },
      409: { description: 'ACCOUNT_EXISTS_WITH_DIFFERENT_CURRENCY or ACCOUNT_ID_TAKEN' },
      413: { description: 'Body too large' },
      415: { description: 'Not application/json' },
      422: { description: 'UNKNOWN_CURRENCY' },
    },
  },
  {
    method: 'get',
    path: '/v1/accounts/:accountId/balance',
    summary: 'Balance in minor units: available, held, posted',
    tag: 'accounts',
    auth: 'any',
    responses: { 200: { description: 'Balance', schema: balanceBody }, 403: { description: 'Not this player\'s account' }, 404: { description: 'ACCOUNT_NOT_FOUND' } },
  },
];
