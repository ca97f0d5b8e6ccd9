// vitest setupFiles entry: runs in every test file.
import { failOnContractViolations } from './response-contract';

failOnContractViolations();
